//! Paging tokens. Listings page by the name last returned (base64 so clients treat it as
//! opaque); GetLogEvents' tokens are AWS's `f/<56 digits>` and `b/<56 digits>` naming a position
//! in the stream (batch number and index within it); FilterLogEvents' token names the last event
//! returned by its timestamp and event id, the order it answers in.

use base64::Engine;

const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn after_name(name: &str) -> String {
    ENGINE.encode(format!("n:{name}"))
}

pub fn name_of(token: &str) -> Option<String> {
    let bytes = ENGINE.decode(token).ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("n:").map(str::to_string)
}

/// A position in a stream: before event `index` of batch `batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub batch: u64,
    pub index: u64,
}

impl Position {
    fn number(self) -> u128 {
        ((self.batch as u128) << 32) | self.index as u128
    }
    pub fn forward(self) -> String {
        format!("f/{:056}", self.number())
    }
    pub fn backward(self) -> String {
        format!("b/{:056}", self.number())
    }
    /// A GetLogEvents token: `(forward, position)`.
    pub fn parse(token: &str) -> Option<(bool, Position)> {
        let (dir, digits) = token.split_once('/')?;
        let n: u128 = digits.parse().ok()?;
        let pos = Position { batch: u64::try_from(n >> 32).ok()?, index: (n & 0xffff_ffff) as u64 };
        match dir {
            "f" => Some((true, pos)),
            "b" => Some((false, pos)),
            _ => None,
        }
    }
}

/// The event id of event `index` of batch `batch` of stream `stream_id`: 56 digits, as AWS's.
pub fn event_id(stream_id: u64, batch: u64, index: usize) -> String {
    format!("{stream_id:020}{batch:020}{index:016}")
}

pub fn after_event(timestamp: i64, event_id: &str) -> String {
    ENGINE.encode(format!("e:{timestamp}:{event_id}"))
}

pub fn event_of(token: &str) -> Option<(i64, String)> {
    let bytes = ENGINE.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (ts, id) = text.strip_prefix("e:")?.split_once(':')?;
    Some((ts.parse().ok()?, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let p = Position { batch: 3, index: 9999 };
        assert_eq!(Position::parse(&p.forward()), Some((true, p)));
        assert_eq!(Position::parse(&p.backward()), Some((false, p)));
        assert_eq!(p.forward().len(), 58);
        assert!(Position::parse("x/12").is_none() && Position::parse("f/abc").is_none());
        assert_eq!(name_of(&after_name("/ecs/web")), Some("/ecs/web".into()));
        assert_eq!(name_of("garbage!"), None);
        let id = event_id(1, 2, 3);
        assert_eq!(id.len(), 56);
        assert_eq!(event_of(&after_event(-5, &id)), Some((-5, id)));
        assert!(Position { batch: 1, index: 5 } < Position { batch: 2, index: 0 });
    }
}
