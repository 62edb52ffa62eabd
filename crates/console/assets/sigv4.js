// Placeholder: replaced by the SigV4 signer.
