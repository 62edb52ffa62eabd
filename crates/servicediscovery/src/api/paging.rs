//! `NextToken`s: the position of the next item in a listing's stable (id) order, base64-wrapped
//! so clients treat it as opaque.

use base64::Engine;

const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn encode(index: usize) -> String {
    ENGINE.encode(format!("sd:{index}"))
}

pub fn decode(token: &str) -> Option<usize> {
    let bytes = ENGINE.decode(token).ok()?;
    std::str::from_utf8(&bytes).ok()?.strip_prefix("sd:")?.parse().ok()
}

/// One page of `items` from `start`, and the token of the next page if there is one.
pub fn page<T>(items: Vec<T>, start: usize, limit: usize) -> (Vec<T>, Option<String>) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next = (start + limit < total).then(|| encode(start + limit));
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode(&encode(42)), Some(42));
        assert_eq!(decode("not-a-token"), None);
        let (items, next) = page(vec![1, 2, 3, 4, 5], 0, 2);
        assert_eq!(items, vec![1, 2]);
        let (items, next) = page(vec![1, 2, 3, 4, 5], decode(&next.unwrap()).unwrap(), 2);
        assert_eq!(items, vec![3, 4]);
        let (items, last) = page(vec![1, 2, 3, 4, 5], decode(&next.unwrap()).unwrap(), 2);
        assert_eq!((items, last), (vec![5], None));
    }
}
