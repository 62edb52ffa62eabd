//! Timestamps on the wire: epoch seconds as a JSON number, possibly fractional.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Seconds since the Unix epoch, with millisecond precision as AWS sends them.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Timestamp(pub f64);

impl Timestamp {
    /// From whole milliseconds since the epoch.
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms as f64 / 1000.0)
    }

    /// Whole milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        (self.0 * 1000.0).round() as i64
    }
}

/// Epoch milliseconds as RFC 3339 in UTC with milliseconds (`2026-12-06T07:54:41.000Z`), as
/// the query APIs and the task metadata endpoint write times.
pub fn rfc3339_millis(ms: i64) -> String {
    let (date, millis) = (rfc3339_seconds(ms), ms.rem_euclid(1000));
    format!("{}.{millis:03}Z", &date[..date.len() - 1])
}

/// Epoch milliseconds as RFC 3339 in UTC to the second (`2026-12-06T08:00:00Z`).
pub fn rfc3339_seconds(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole seconds go out as integers, which every SDK parses; fractions keep milliseconds.
        if self.0.fract() == 0.0 && self.0.abs() < 9.0e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64((self.0 * 1000.0).round() / 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() {
            Ok(Timestamp(v))
        } else {
            Err(serde::de::Error::custom("timestamp must be a finite number"))
        }
    }
}
