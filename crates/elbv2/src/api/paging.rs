//! ELB's `Marker` / `PageSize` over a list already in answer order: the marker is the key of the
//! first entry of the next page, so a page stays right when entries before it come or go.

use flotilla_query::Params;

use super::errors::{out_of_range, validation};
use super::Result;

/// One page of `items` per the request's `Marker` and `PageSize` (1-400), and the next marker.
pub fn page<T>(p: &Params, items: Vec<T>, key: impl Fn(&T) -> String) -> Result<(Vec<T>, Option<String>)> {
    let size = match p.int::<i64>("PageSize")? {
        Some(n) if !(1..=400).contains(&n) => return Err(out_of_range("pageSize", n, 1, 400)),
        Some(n) => n as usize,
        None => usize::MAX,
    };
    let start = match p.get("Marker") {
        None | Some("") => 0,
        Some(m) => items
            .iter()
            .position(|i| key(i) == m)
            .ok_or_else(|| validation(format!("The marker '{m}' is not valid")))?,
    };
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let next = rest.get(size).map(&key);
    rest.truncate(size);
    Ok((rest, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DIALECT;

    #[test]
    fn pages_follow_their_markers() {
        let key = |s: &&str| s.to_string();
        let p = Params::from_pairs(DIALECT, [("PageSize", "2")]);
        let (page1, next) = page(&p, vec!["a", "b", "c"], key).unwrap();
        assert_eq!((page1, next.as_deref()), (vec!["a", "b"], Some("c")));
        let p = Params::from_pairs(DIALECT, [("PageSize", "2"), ("Marker", "c")]);
        assert_eq!(page(&p, vec!["a", "b", "c"], key).unwrap(), (vec!["c"], None));
        let p = Params::from_pairs(DIALECT, [("PageSize", "0")]);
        assert_eq!(page(&p, vec!["a"], key).unwrap_err().code, "ValidationError");
        let p = Params::from_pairs(DIALECT, [("Marker", "zz")]);
        assert_eq!(page(&p, vec!["a"], key).unwrap_err().code, "ValidationError");
    }
}
