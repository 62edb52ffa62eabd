//! The on-disk encodings of the redb backend's records.
//!
//! Every record starts with a version byte so that the format can change later: old versions
//! stay readable and are migrated forward, never reinterpreted. Integers are little-endian,
//! lengths are `u32`. Version 1:
//!
//! - a key's entry: `[1][create_revision u64][mod_revision u64][value bytes...]`

use std::sync::Arc;

use crate::types::{KeyValue, Revision, StoreError};

const VERSION: u8 = 1;

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

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(buf))
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
    fn corrupt_records_are_errors_not_panics() {
        let bytes = encode_entry(&kv("k", b"value", 1, 1));
        for cut in 0..17 {
            assert!(decode_entry("k", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_entry("k", &[2, 0, 0]).is_err());
        assert!(decode_entry("k", &[1, 0, 0]).is_err());
    }
}
