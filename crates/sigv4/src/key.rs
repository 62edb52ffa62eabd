//! Signing-key derivation, the string to sign, and the cache that spares the verifier four HMACs
//! per request.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ALGORITHM;

type HmacSha256 = Hmac<Sha256>;

/// The derived `kSigning` key. Not `Debug`: it is as good as the secret for a day.
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl SigningKey {
    /// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
    pub fn derive(secret: &str, date: &str, region: &str, service: &str) -> Self {
        let mut k_secret = Vec::with_capacity(4 + secret.len());
        k_secret.extend_from_slice(b"AWS4");
        k_secret.extend_from_slice(secret.as_bytes());
        let k_date = hmac(&k_secret, &[date.as_bytes()]);
        let k_region = hmac(&k_date, &[region.as_bytes()]);
        let k_service = hmac(&k_region, &[service.as_bytes()]);
        SigningKey(hmac(&k_service, &[b"aws4_request"]))
    }

    /// `HMAC(kSigning, string_to_sign)`, where the string to sign is
    /// `AWS4-HMAC-SHA256\n<amz-date>\n<scope>\n<hex(sha256(canonical request))>`. It is fed to the
    /// MAC piecewise so it is never assembled.
    pub fn sign(&self, amz_date: &[u8], scope: &str, canonical_digest: &[u8; 32]) -> [u8; 32] {
        let mut hex_digest = [0u8; 64];
        // 32 bytes always fit 64 hex characters.
        hex::encode_to_slice(canonical_digest, &mut hex_digest).expect("64-byte buffer");
        hmac(&self.0, &[ALGORITHM.as_bytes(), b"\n", amz_date, b"\n", scope.as_bytes(), b"\n", &hex_digest])
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Compares a lowercase hex signature from the client with ours in constant time, so the time a
/// rejection takes leaks nothing about how many leading characters were right.
pub(crate) fn signature_matches(expected: &[u8; 32], provided_hex: &str) -> bool {
    let mut ours = [0u8; 64];
    hex::encode_to_slice(expected, &mut ours).expect("64-byte buffer");
    provided_hex.len() == ours.len() && bool::from(ours.ct_eq(provided_hex.as_bytes()))
}

/// Beyond this many entries the cache is emptied and refilled. Entries are only added once a
/// signature has verified, so only real principals fill it: a handful of keys times at most two
/// dates (around midnight) times the accepted regions.
const CACHE_CAPACITY: usize = 256;

struct CacheEntry {
    /// The secret the key was derived from. Checked on every hit so a rotated or revoked secret
    /// stops working at once instead of at the next UTC midnight.
    secret: String,
    key: SigningKey,
}

/// Signing keys by `"<akid>/<yyyymmdd>/<region>"`, which is a prefix of the credential in the
/// `Authorization` header, so a hit needs no allocation. The service is left out because each
/// verifier, and so each cache, serves exactly one.
#[derive(Default)]
pub(crate) struct KeyCache {
    entries: Mutex<HashMap<String, CacheEntry>>,
}

impl KeyCache {
    pub(crate) fn get(&self, id: &str, secret: &str) -> Option<SigningKey> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(id)?;
        let same_secret =
            entry.secret.len() == secret.len() && bool::from(entry.secret.as_bytes().ct_eq(secret.as_bytes()));
        same_secret.then(|| entry.key.clone())
    }

    pub(crate) fn insert(&self, id: &str, secret: &str, key: SigningKey) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_CAPACITY && !entries.contains_key(id) {
            entries.clear();
        }
        entries.insert(id.to_owned(), CacheEntry { secret: secret.to_owned(), key });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_the_documented_key() {
        // From AWS's "Examples of how to derive a signing key for Signature Version 4".
        let key = SigningKey::derive("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam");
        assert_eq!(hex::encode(key.0), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }

    #[test]
    fn constant_time_compare() {
        let sig = [0xabu8; 32];
        let hex_sig = hex::encode(sig);
        assert!(signature_matches(&sig, &hex_sig));
        assert!(!signature_matches(&sig, &hex_sig.to_uppercase()));
        assert!(!signature_matches(&sig, &hex_sig[..63]));
        assert!(!signature_matches(&sig, ""));
    }

    #[test]
    fn cache_checks_the_secret() {
        let cache = KeyCache::default();
        let key = SigningKey::derive("s1", "20150830", "us-east-1", "ecs");
        cache.insert("AK/20150830/us-east-1", "s1", key);
        assert!(cache.get("AK/20150830/us-east-1", "s1").is_some());
        assert!(cache.get("AK/20150830/us-east-1", "s2").is_none());
        assert!(cache.get("AK/20150831/us-east-1", "s1").is_none());
    }

    #[test]
    fn cache_is_bounded() {
        let cache = KeyCache::default();
        for i in 0..(CACHE_CAPACITY * 2 + 3) {
            let key = SigningKey::derive("s", "20150830", "r", "ecs");
            cache.insert(&format!("AK{i}/20150830/r"), "s", key);
            assert!(cache.len() <= CACHE_CAPACITY);
        }
    }
}
