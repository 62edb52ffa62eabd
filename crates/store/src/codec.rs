//! The on-disk encodings of the redb backend's records.
//!
//! Every record starts with a version byte so that the format can change later: old versions
//! stay readable and are migrated forward, never reinterpreted. Integers are little-endian,
//! lengths are `u32`. Version 1:
//!
//! - a key's entry: `[1][create_revision u64][mod_revision u64][value bytes...]`
//! - a log entry (the events of one revision): `[1][count u32]` then per event either
//!   `[0][key_len u32][key][create_revision u64][value_len u32][value]` for a put (its mod
//!   revision is the entry's revision) or `[1][key_len u32][key]` for a delete.

use std::sync::Arc;

use crate::types::{Event, KeyValue, Revision, StoreError};

const VERSION: u8 = 1;
const PUT: u8 = 0;
const DELETE: u8 = 1;

pub(crate) fn encode_entry(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + kv.value.len());
    out.push(VERSION);
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

/// The create and mod revisions of an entry, without copying its value.
pub(crate) fn decode_entry_revisions(key: &str, bytes: &[u8]) -> Result<(Revision, Revision), StoreError> {
    let mut r = Reader::new(bytes, key);
    r.version()?;
    Ok((r.u64()?, r.u64()?))
}

pub(crate) fn decode_entry(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let mut r = Reader::new(bytes, key);
    r.version()?;
    let create_revision = r.u64()?;
    let mod_revision = r.u64()?;
    Ok(KeyValue { key: key.to_owned(), value: Arc::from(r.rest()), create_revision, mod_revision })
}

pub(crate) fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = vec![VERSION];
    put_len(&mut out, events.len());
    for event in events {
        match event {
            Event::Put(kv) => {
                out.push(PUT);
                put_bytes(&mut out, kv.key.as_bytes());
                out.extend_from_slice(&kv.create_revision.to_le_bytes());
                put_bytes(&mut out, &kv.value);
            }
            Event::Delete { key } => {
                out.push(DELETE);
                put_bytes(&mut out, key.as_bytes());
            }
        }
    }
    out
}

/// The events of the log entry for `revision` whose keys start with `prefix`. Values of other
/// keys are skipped without being copied.
pub(crate) fn decode_events(revision: Revision, bytes: &[u8], prefix: &str) -> Result<Vec<Event>, StoreError> {
    let context = format!("log entry {revision}");
    let mut r = Reader::new(bytes, &context);
    r.version()?;
    let count = r.u32()?;
    let mut events = Vec::new();
    for _ in 0..count {
        let tag = r.u8()?;
        let key = r.str()?;
        let wanted = key.starts_with(prefix);
        match tag {
            PUT => {
                let create_revision = r.u64()?;
                let value = r.bytes()?;
                if wanted {
                    events.push(Event::Put(KeyValue {
                        key: key.to_owned(),
                        value: Arc::from(value),
                        create_revision,
                        mod_revision: revision,
                    }));
                }
            }
            DELETE => {
                if wanted {
                    events.push(Event::Delete { key: key.to_owned() });
                }
            }
            other => return Err(r.corrupt(&format!("unknown event tag {other}"))),
        }
    }
    Ok(events)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Keys and values are far below 4 GiB (redb itself caps values well under that).
    let len = u32::try_from(len).expect("record field longer than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    context: &'a str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], context: &'a str) -> Self {
        Reader { bytes, context }
    }

    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Io(format!("corrupt record ({}): {what}", self.context))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn version(&mut self) -> Result<(), StoreError> {
        match self.u8()? {
            VERSION => Ok(()),
            other => Err(self.corrupt(&format!("unknown record version {other}"))),
        }
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(buf))
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str, StoreError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupt("key is not UTF-8"))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], create: Revision, modified: Revision) -> KeyValue {
        KeyValue { key: key.into(), value: Arc::from(value), create_revision: create, mod_revision: modified }
    }

    #[test]
    fn entry_round_trips() {
        let original = kv("a/b", b"hello", 3, 9);
        let bytes = encode_entry(&original);
        assert_eq!(decode_entry("a/b", &bytes).unwrap(), original);
        assert_eq!(decode_entry_revisions("a/b", &bytes).unwrap(), (3, 9));
    }

    #[test]
    fn events_round_trip_and_filter_by_prefix() {
        let events = vec![
            Event::Put(kv("a/1", b"x", 2, 7)),
            Event::Delete { key: "b/1".into() },
            Event::Put(kv("a/2", b"", 7, 7)),
        ];
        let bytes = encode_events(&events);
        assert_eq!(decode_events(7, &bytes, "").unwrap(), events);
        assert_eq!(decode_events(7, &bytes, "a/").unwrap(), vec![events[0].clone(), events[2].clone()]);
        assert_eq!(decode_events(7, &bytes, "c").unwrap(), vec![]);
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let bytes = encode_events(&[Event::Put(kv("k", b"value", 1, 1))]);
        for cut in 0..bytes.len() {
            assert!(decode_events(1, &bytes[..cut], "").is_err(), "cut at {cut}");
        }
        assert!(decode_entry("k", &[2, 0, 0]).is_err());
        assert!(decode_entry("k", &[1, 0, 0]).is_err());
    }
}
