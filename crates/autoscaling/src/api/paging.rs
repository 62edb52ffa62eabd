//! `MaxRecords`/`MaxResults` and `NextToken` over a list already in its answer order: the token
//! is the key of the first entry of the next page, so a page stays right when entries before it
//! come or go between calls.

use flotilla_query::{Dialect, QueryError};

use super::Result;

/// One page of `items` starting at `token` (an entry's key), at most `max` long, and the token
/// of the page after it.
pub fn page<T>(
    dialect: Dialect,
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    max: Option<usize>,
    token: Option<&str>,
) -> Result<(Vec<T>, Option<String>)> {
    let start = match token {
        None => 0,
        Some(t) => items.iter().position(|i| key(i) == t).ok_or_else(|| match dialect {
            Dialect::Ec2 => QueryError::new("InvalidPaginationToken", format!("The token '{t}' is invalid.")),
            Dialect::Query { .. } => QueryError::new("InvalidNextToken", "The token provided is not valid."),
        })?,
    };
    let max = max.unwrap_or(usize::MAX).max(1);
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let next = rest.get(max).map(&key);
    rest.truncate(max);
    Ok((rest, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_tokens() {
        let items = vec!["a", "b", "c"];
        let key = |s: &&str| s.to_string();
        let (p, next) = page(Dialect::Ec2, items.clone(), key, Some(2), None).unwrap();
        assert_eq!((p, next.as_deref()), (vec!["a", "b"], Some("c")));
        let (p, next) = page(Dialect::Ec2, items.clone(), key, Some(2), Some("c")).unwrap();
        assert_eq!((p, next), (vec!["c"], None));
        assert_eq!(page(Dialect::Ec2, items, key, None, Some("zz")).unwrap_err().code, "InvalidPaginationToken");
    }
}
