//! The values of the cluster query language: literals, how two of them order, dates, and patterns.
//! Everything here runs either once at parse time or without allocating, because `eval` calls the
//! comparison functions once per container instance.

use std::cmp::Ordering;

use regex::Regex;

/// A literal argument, with its numeric reading worked out once at parse time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Literal {
    pub text: Box<str>,
    pub number: Option<f64>,
}

impl Literal {
    pub fn new(text: &str) -> Self {
        Literal { text: text.into(), number: parse_number(text) }
    }
}

/// A decimal number such as `4`, `-2.5` or `1e3`. Rust's own `f64` parser also takes `inf` and
/// `NaN`, which would make an attribute value of `nan` compare as a number, so the characters are
/// checked first.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let first_ok = b.first().is_some_and(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.'));
    if !first_ok || !b.iter().all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')) {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Orders a value against a literal for `>`, `>=`, `<` and `<=`: as numbers when both read as
/// numbers (so `10 > 9`), otherwise as versions (so `1.14.5 > 1.9.0`, and plain words fall back to
/// byte order). `version_only` skips the numeric reading, for `agentVersion`, where `1.10` is newer
/// than `1.9`.
pub(crate) fn compare(value: &str, lit: &Literal, version_only: bool) -> Ordering {
    if !version_only {
        if let (Some(a), Some(b)) = (parse_number(value), lit.number) {
            return a.partial_cmp(&b).unwrap_or(Ordering::Equal);
        }
    }
    compare_versions(value, &lit.text)
}

/// Dot-separated components, each compared as a whole number when both sides are all digits and
/// as bytes otherwise; a shorter version that is a prefix of a longer one orders first.
pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = if is_digits(x) && is_digits(y) { compare_digits(x, y) } else { x.cmp(y) };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// Compares digit strings of any length without overflowing: fewer significant digits is smaller.
fn compare_digits(x: &str, y: &str) -> Ordering {
    let x = x.trim_start_matches('0');
    let y = y.trim_start_matches('0');
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

/// Reads the date formats the ECS documentation lists for `registeredAt` (`2018-06-18T22:28:28+00:00`,
/// `2018-06-18T22:28:28Z`, `2018-06-18T22:28:28`, `2018-06-18`; fractional seconds are accepted too)
/// as a half-open span of epoch milliseconds `[start, end)` at the precision written: a bare date is
/// the whole day, a time the whole second. Comparisons then read naturally: `registeredAt ==
/// 2018-06-18` is any time that day, and `registeredAt > 2018-06-18` starts the next day. A time
/// without a zone is UTC.
pub(crate) fn parse_time(s: &str) -> Option<(i64, i64)> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let midnight = days_from_civil(year, month, day) * 86_400_000;
    if b.len() == 10 {
        return Some((midnight, midnight + 86_400_000));
    }
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    let mut width = 1000;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        // Milliseconds are the finest instant the store keeps; further digits only narrow the span.
        let ms_digits = &frac[..n.min(3)];
        millis = digits(ms_digits)? * 10i64.pow(3 - ms_digits.len() as u32);
        width = 10i64.pow(3 - ms_digits.len() as u32);
        rest = &frac[n..];
    }
    let offset_minutes = match rest {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let minutes = digits(&[*h1, *h2])? * 60 + digits(&[*m1, *m2])?;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let start = midnight + ((hour * 60 + minute - offset_minutes) * 60 + second) * 1000 + millis;
    Some((start, start + width))
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Compiles the argument of `=~` / `!~`. The ECS documentation defines it as a Java regular
/// expression that must match the whole value (`t2.*` matches `t2.micro`, not `xt2`). People also
/// write shell wildcards such as `*.large`, which no regex dialect accepts because the `*` repeats
/// nothing; such a `*` (at the start, or after `(` or `|`) is read as "any run of characters".
pub(crate) fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    let mut src = String::with_capacity(pattern.len() + 8);
    src.push_str("^(?:");
    // True at the start and right after an unescaped `(` or `|`: where a `*` has nothing to repeat.
    let mut alternative_starts = true;
    let mut escaped = false;
    for c in pattern.chars() {
        if c == '*' && !escaped && alternative_starts {
            src.push_str(".*");
        } else {
            src.push(c);
        }
        alternative_starts = !escaped && (c == '(' || c == '|');
        escaped = c == '\\' && !escaped;
    }
    src.push_str(")$");
    Regex::new(&src).map_err(|e| match e {
        regex::Error::Syntax(msg) => msg.lines().last().unwrap_or("invalid regular expression").trim().to_string(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_refuse_words_that_rust_would_parse() {
        assert_eq!(parse_number("12"), Some(12.0));
        assert_eq!(parse_number("-2.5"), Some(-2.5));
        assert_eq!(parse_number("nan"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("1.2.3"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn versions_compare_component_wise() {
        assert_eq!(compare_versions("1.14.5", "1.9.0"), Ordering::Greater);
        assert_eq!(compare_versions("1.14.5", "1.14.5"), Ordering::Equal);
        assert_eq!(compare_versions("1.14", "1.14.0"), Ordering::Less);
        assert_eq!(compare_versions("0010", "9"), Ordering::Greater);
        assert_eq!(compare_versions("m5.large", "m5.xlarge"), Ordering::Less);
        assert_eq!(compare("10", &Literal::new("9"), false), Ordering::Greater);
        assert_eq!(compare("1.10", &Literal::new("1.9"), false), Ordering::Less);
        assert_eq!(compare("1.10", &Literal::new("1.9"), true), Ordering::Greater);
    }

    #[test]
    fn documented_date_formats() {
        let day = parse_time("2018-06-18").unwrap();
        assert_eq!(day, (1_529_280_000_000, 1_529_366_400_000));
        let z = parse_time("2018-06-18T22:28:28Z").unwrap();
        assert_eq!(z, (1_529_360_908_000, 1_529_360_909_000));
        assert_eq!(parse_time("2018-06-18T22:28:28+00:00"), Some(z));
        assert_eq!(parse_time("2018-06-18T22:28:28"), Some(z));
        assert_eq!(parse_time("2018-06-19T00:28:28+02:00"), Some(z));
        assert_eq!(parse_time("2018-06-18T22:28:28.5Z"), Some((1_529_360_908_500, 1_529_360_908_600)));
        assert_eq!(parse_time("1970-01-01"), Some((0, 86_400_000)));
        for bad in ["2018-13-01", "2018-02-30", "2018-6-18", "2018-06-18T25:00:00", "2018-06-18T22:28", "yesterday"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert!(parse_time("2020-02-29").is_some());
        assert!(parse_time("2019-02-29").is_none());
    }

    #[test]
    fn patterns_match_whole_values_and_take_wildcards() {
        let re = compile_pattern("t2.*").unwrap();
        assert!(re.is_match("t2.micro") && !re.is_match("xt2.micro"));
        let wild = compile_pattern("*.large").unwrap();
        assert!(wild.is_match("m5.large") && !wild.is_match("m5.xlarge2"));
        let alt = compile_pattern("(*-prod|staging)").unwrap();
        assert!(alt.is_match("eu-prod") && alt.is_match("staging") && !alt.is_match("dev"));
        assert!(compile_pattern(r"a\*").unwrap().is_match("a*"));
        assert!(compile_pattern("t2.(").is_err());
    }
}
