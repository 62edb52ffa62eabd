//! The request timestamp: SigV4's ISO 8601 basic format (`20150830T123600Z`) and, because botocore
//! falls back to the `Date` header, the HTTP IMF-fixdate form (`Sun, 30 Aug 2015 12:36:00 GMT`).
//!
//! Only UTC calendar arithmetic is needed, so this uses Howard Hinnant's days-from-civil algorithm
//! rather than a date crate.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A whole-second UTC instant as it appears in `X-Amz-Date`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AmzDate {
    /// Seconds since the Unix epoch. Signed so that instants before 1970, which a client can still
    /// write, compare and format correctly instead of failing to parse.
    secs: i64,
}

impl AmzDate {
    /// Truncates to whole seconds, which is all the wire format carries.
    pub fn from_system_time(t: SystemTime) -> Self {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // Round towards the past so a pre-epoch time never lands a second late.
            Err(e) => {
                let d = e.duration();
                let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                -whole - i64::from(d.subsec_nanos() > 0)
            }
        };
        AmzDate { secs }
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.secs.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(self.secs.unsigned_abs())
        }
    }

    pub fn unix_seconds(self) -> i64 {
        self.secs
    }

    /// Saturates rather than overflowing: the result only ever appears in error messages.
    pub fn add_seconds(self, secs: i64) -> Self {
        AmzDate { secs: self.secs.saturating_add(secs) }
    }

    /// Parses `YYYYMMDDTHHMMSSZ` strictly: exactly 16 ASCII characters with valid field ranges.
    pub fn parse_basic(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[4..6])?;
        let day = digits(&b[6..8])?;
        let hour = digits(&b[9..11])?;
        let minute = digits(&b[11..13])?;
        let second = digits(&b[13..15])?;
        Self::from_fields(year, month, day, hour, minute, second)
    }

    /// Parses the HTTP-date preferred form, `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
    /// The weekday is not cross-checked: it carries no information the rest does not.
    pub fn parse_imf_fixdate(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
            return None;
        }
        if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
            return None;
        }
        let day = digits(&b[5..7])?;
        let month = MONTHS.iter().position(|m| m.as_bytes() == &b[8..11])? as u32 + 1;
        let year = digits(&b[12..16])?;
        let hour = digits(&b[17..19])?;
        let minute = digits(&b[20..22])?;
        let second = digits(&b[23..25])?;
        Self::from_fields(year, month, day, hour, minute, second)
    }

    /// Accepts either form; `X-Amz-Date` should always be basic, `Date` is usually IMF-fixdate.
    pub fn parse_any(s: &str) -> Option<Self> {
        Self::parse_basic(s).or_else(|| Self::parse_imf_fixdate(s))
    }

    fn from_fields(year: u32, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Option<Self> {
        // Leap seconds (60) are refused: no signer emits them and accepting one would give two
        // spellings of the same instant.
        if !(1..=12).contains(&month) || hour > 23 || min > 59 || sec > 59 {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(i64::from(year), month, day);
        let secs = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
        Some(AmzDate { secs })
    }

    /// The `YYYYMMDD` part, as used in the credential scope.
    pub fn date_stamp(self) -> [u8; 8] {
        let full = self.basic_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&full[..8]);
        out
    }

    /// `YYYYMMDDTHHMMSSZ` without allocating. Years outside 0..=9999 cannot be written in four
    /// digits and are clamped to the nearest representable instant.
    pub fn basic_bytes(self) -> [u8; 16] {
        const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
        const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        let secs = self.secs.clamp(MIN, MAX);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"00000000T000000Z";
        put_digits(&mut out[0..4], year as u32);
        put_digits(&mut out[4..6], month);
        put_digits(&mut out[6..8], day);
        put_digits(&mut out[9..11], rem / 3600);
        put_digits(&mut out[11..13], rem / 60 % 60);
        put_digits(&mut out[13..15], rem % 60);
        out
    }
}

impl fmt::Display for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.basic_bytes();
        // Always ASCII digits, 'T' and 'Z'.
        f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
    }
}

/// Formats `t` as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: SystemTime) -> String {
    AmzDate::from_system_time(t).to_string()
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

fn put_digits(out: &mut [u8], mut v: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let d = AmzDate::parse_basic("20150830T123600Z").unwrap();
        assert_eq!(d.unix_seconds(), 1_440_938_160);
        assert_eq!(d.to_string(), "20150830T123600Z");
        assert_eq!(&d.date_stamp(), b"20150830");
        assert_eq!(AmzDate::parse_basic("19700101T000000Z").unwrap().unix_seconds(), 0);
        assert_eq!(AmzDate::parse_basic("20000229T235959Z").unwrap().unix_seconds(), 951_868_799);
    }

    #[test]
    fn imf_fixdate() {
        let d = AmzDate::parse_imf_fixdate("Sun, 30 Aug 2015 12:36:00 GMT").unwrap();
        assert_eq!(d.to_string(), "20150830T123600Z");
        assert_eq!(AmzDate::parse_any("Sun, 30 Aug 2015 12:36:00 GMT"), Some(d));
        assert_eq!(AmzDate::parse_any("20150830T123600Z"), Some(d));
        assert!(AmzDate::parse_imf_fixdate("Sun, 30 Foo 2015 12:36:00 GMT").is_none());
        assert!(AmzDate::parse_imf_fixdate("Sun, 30 Aug 2015 12:36:00 UTC").is_none());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "20150830T123600",
            "20150830 123600Z",
            "2015083OT123600Z",
            "20151330T123600Z",
            "20150230T123600Z",
            "20190229T000000Z",
            "20150830T243600Z",
            "20150830T126000Z",
            "20150830T123660Z",
            "+0150830T123600Z",
            "２0150830T123600Z",
        ] {
            assert!(AmzDate::parse_basic(bad).is_none(), "{bad:?}");
        }
        assert!(AmzDate::parse_basic("20200229T000000Z").is_some());
    }

    #[test]
    fn round_trips_across_eras() {
        for secs in [-62_167_219_200, -1, 0, 59, 86_399, 86_400, 951_782_400, 4_102_444_800, 253_402_300_799] {
            let d = AmzDate { secs };
            assert_eq!(AmzDate::parse_basic(&d.to_string()), Some(d), "{secs}");
        }
    }

    #[test]
    fn system_time_conversion() {
        let t = UNIX_EPOCH + Duration::from_millis(1_440_938_160_999);
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        let before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(AmzDate::from_system_time(before).unix_seconds(), -1);
        assert_eq!(format_amz_date(before), "19691231T235959Z");
        let d = AmzDate::parse_basic("19691231T235959Z").unwrap();
        assert_eq!(d.to_system_time(), UNIX_EPOCH - Duration::from_secs(1));
    }
}
