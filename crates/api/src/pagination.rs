//! Opaque, tamper-evident pagination tokens and the `maxResults` rules of ECS List calls.
//!
//! A token carries the last key returned and a hash of the request's filters, sealed with an HMAC
//! under a per-server secret: a token from another listing, an edited token or garbage is an
//! InvalidParameterException, never a wrong page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// Seals and opens page tokens.
#[derive(Clone)]
pub struct Paginator {
    secret: Vec<u8>,
}

/// A validated page request: where to start and how many to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: usize,
}

impl Paginator {
    pub fn new(secret: &[u8]) -> Self {
        Paginator { secret: secret.to_vec() }
    }

    /// Validates `maxResults` (1 to `max`, default `default`) and opens `nextToken`.
    /// `scope` names the listing and its filters, so a token only works for the same listing.
    pub fn request(
        &self,
        scope: &str,
        next_token: Option<&str>,
        max_results: Option<i32>,
        default: usize,
        max: usize,
    ) -> Result<PageRequest, ApiError> {
        let limit = match max_results {
            None => default,
            Some(n) if n >= 1 && (n as usize) <= max => n as usize,
            Some(n) => {
                return Err(ApiError::invalid_parameter(format!("maxResults must be between 1 and {max}; got {n}.")))
            }
        };
        let after = match next_token {
            None | Some("") => None,
            Some(t) => Some(self.open(scope, t)?),
        };
        Ok(PageRequest { after, limit })
    }

    /// A token that resumes after `last_key` in the listing named by `scope`.
    pub fn seal(&self, scope: &str, last_key: &str) -> String {
        let mut payload = Vec::with_capacity(last_key.len() + 16);
        payload.extend_from_slice(last_key.as_bytes());
        let tag = self.tag(scope, last_key.as_bytes());
        payload.extend_from_slice(&tag[..16]);
        URL_SAFE_NO_PAD.encode(payload)
    }

    fn open(&self, scope: &str, token: &str) -> Result<String, ApiError> {
        let invalid = || ApiError::invalid_parameter("Invalid nextToken: it was not issued for this request.");
        let raw = URL_SAFE_NO_PAD.decode(token.as_bytes()).map_err(|_| invalid())?;
        if raw.len() < 16 {
            return Err(invalid());
        }
        let (key, tag) = raw.split_at(raw.len() - 16);
        let mut mac = self.mac(scope);
        mac.update(key);
        mac.verify_truncated_left(tag).map_err(|_| invalid())?;
        String::from_utf8(key.to_vec()).map_err(|_| invalid())
    }

    fn mac(&self, scope: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac
    }

    fn tag(&self, scope: &str, key: &[u8]) -> [u8; 32] {
        let mut mac = self.mac(scope);
        mac.update(key);
        mac.finalize().into_bytes().into()
    }
}

/// Takes one page from items in ascending key order: the items after `req.after`, at most
/// `req.limit`, and the token for the rest if any remain.
pub fn page<T>(
    pager: &Paginator,
    scope: &str,
    req: &PageRequest,
    items: impl Iterator<Item = T>,
    key_of: impl Fn(&T) -> &str,
) -> (Vec<T>, Option<String>) {
    page_ordered(pager, scope, req, items, key_of, false)
}

/// As [`page`], for items in ascending (`descending` false) or descending key order.
pub fn page_ordered<T>(
    pager: &Paginator,
    scope: &str,
    req: &PageRequest,
    items: impl Iterator<Item = T>,
    key_of: impl Fn(&T) -> &str,
    descending: bool,
) -> (Vec<T>, Option<String>) {
    let mut out = Vec::with_capacity(req.limit.min(128));
    let mut more = false;
    for item in items {
        if let Some(after) = &req.after {
            let k = key_of(&item);
            let past = if descending { k < after.as_str() } else { k > after.as_str() };
            if !past {
                continue;
            }
        }
        if out.len() == req.limit {
            more = true;
            break;
        }
        out.push(item);
    }
    let token = if more { out.last().map(|last| pager.seal(scope, key_of(last))) } else { None };
    (out, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_only_in_their_scope() {
        let p = Paginator::new(b"secret");
        let t = p.seal("ListClusters", "b");
        assert_eq!(p.request("ListClusters", Some(&t), None, 100, 100).unwrap().after.as_deref(), Some("b"));
        assert!(p.request("ListTasks", Some(&t), None, 100, 100).is_err());
        assert!(p.request("ListClusters", Some("garbage!"), None, 100, 100).is_err());
        let mut tampered = t.clone();
        tampered.replace_range(0..1, if t.starts_with('A') { "B" } else { "A" });
        assert!(p.request("ListClusters", Some(&tampered), None, 100, 100).is_err());
    }

    #[test]
    fn max_results_bounds() {
        let p = Paginator::new(b"s");
        assert!(p.request("x", None, Some(0), 100, 100).is_err());
        assert!(p.request("x", None, Some(101), 100, 100).is_err());
        assert_eq!(p.request("x", None, Some(100), 10, 100).unwrap().limit, 100);
        assert_eq!(p.request("x", None, None, 10, 100).unwrap().limit, 10);
    }

    #[test]
    fn pages_walk_every_item_once() {
        let p = Paginator::new(b"s");
        let all: Vec<String> = (0..25).map(|i| format!("k{i:03}")).collect();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = p.request("x", token.as_deref(), Some(10), 100, 100).unwrap();
            let (items, next) = page(&p, "x", &req, all.iter().cloned(), |s: &String| s.as_str());
            seen.extend(items);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, all);
    }
}
