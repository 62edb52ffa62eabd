// Placeholder: replaced by the console script.
