//! Times as the query APIs write them: ISO 8601 in UTC with milliseconds
//! (`2026-12-06T07:54:41.000Z`), from the records' Unix milliseconds.

/// `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso8601(ms: i64) -> String {
    flotilla_model::timestamp::rfc3339_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_796_543_681_000), "2026-12-06T07:54:41.000Z");
    }
}
