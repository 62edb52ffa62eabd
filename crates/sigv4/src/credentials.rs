//! Access keys and the ways the verifier can find a key's secret.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// An access key pair. `Debug` leaves the secret out so credentials can sit in logged structs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials { access_key_id: access_key_id.into(), secret_access_key: secret_access_key.into() }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .finish()
    }
}

/// Finds the secret for an access key id; `None` means the key is unknown.
///
/// Implemented for a single [`Credentials`], a slice or `Vec` of them, a map from key id to
/// secret, references and `Arc`s of those, and any closure via [`SecretFn`].
pub trait SecretLookup {
    fn secret(&self, access_key_id: &str) -> Option<String>;
}

impl SecretLookup for Credentials {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (self.access_key_id == access_key_id).then(|| self.secret_access_key.clone())
    }
}

impl SecretLookup for [Credentials] {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        self.iter().find_map(|c| c.secret(access_key_id))
    }
}

impl SecretLookup for Vec<Credentials> {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        self.as_slice().secret(access_key_id)
    }
}

impl<S: std::hash::BuildHasher> SecretLookup for HashMap<String, String, S> {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        self.get(access_key_id).cloned()
    }
}

impl<T: SecretLookup + ?Sized> SecretLookup for &T {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (**self).secret(access_key_id)
    }
}

impl<T: SecretLookup + ?Sized> SecretLookup for Arc<T> {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (**self).secret(access_key_id)
    }
}

/// Adapts a closure, e.g. one that reads the credential store: `SecretFn(|akid| store.get(akid))`.
///
/// A wrapper rather than a blanket impl on `Fn`, which would conflict with the `HashMap` impl.
#[derive(Clone, Copy)]
pub struct SecretFn<F>(pub F);

impl<F: Fn(&str) -> Option<String>> SecretLookup for SecretFn<F> {
    fn secret(&self, access_key_id: &str) -> Option<String> {
        (self.0)(access_key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let one = Credentials::new("AK", "secret");
        assert_eq!(one.secret("AK").as_deref(), Some("secret"));
        assert_eq!(one.secret("ak"), None);

        let many = vec![one.clone(), Credentials::new("AK2", "s2")];
        assert_eq!(many.secret("AK2").as_deref(), Some("s2"));
        assert_eq!(many.secret("AK3"), None);

        let map: HashMap<String, String> = [("AK".to_owned(), "m".to_owned())].into();
        assert_eq!(map.secret("AK").as_deref(), Some("m"));
        fn by_value(lookup: impl SecretLookup) -> Option<String> {
            lookup.secret("AK")
        }
        assert_eq!(by_value(&map).as_deref(), Some("m"));
        assert_eq!(Arc::new(map).secret("AK").as_deref(), Some("m"));

        let f = SecretFn(|akid: &str| (akid == "F").then(|| "f".to_owned()));
        assert_eq!(f.secret("F").as_deref(), Some("f"));
        assert_eq!(f.secret("G"), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", Credentials::new("AKID", "very-secret"));
        assert!(shown.contains("AKID"));
        assert!(!shown.contains("very-secret"));
    }
}
