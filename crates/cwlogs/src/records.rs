//! The stored format of CloudWatch Logs data. Group and stream records are JSON under
//! `logs/group/<group>` and `logs/stream/<group>:<stream>` (`:` appears in neither name, so a
//! group's streams are one prefix). Events are stored in batches under
//! `logs/events/<stream-id>/<seq>`: the stream's random id rather than its name, so the batches
//! of a deleted stream can never show in a new one of the same name. A stream's batches are
//! numbered without gaps from `first_batch` to `next_batch - 1`; retention drops them from the
//! front. A batch is a small binary record (timestamps and lengths, then the raw bytes), so that
//! a PutLogEvents of AWS's 1 MiB limit fits etcd's request limit whatever its messages hold.

use serde::{Deserialize, Serialize};

/// Every key of this service starts here; the API cache skips it.
pub const ROOT: &str = "logs/";
pub const GROUP: &str = "logs/group/";
pub const STREAM: &str = "logs/stream/";
pub const EVENTS: &str = "logs/events/";

pub fn group_key(group: &str) -> String {
    format!("{GROUP}{group}")
}
pub fn streams_of(group: &str) -> String {
    format!("{STREAM}{group}:")
}
pub fn stream_key(group: &str, stream: &str) -> String {
    format!("{STREAM}{group}:{stream}")
}
pub fn batch_key(stream_id: u64, seq: u64) -> String {
    format!("{EVENTS}{stream_id:016x}/{seq:020}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRecord {
    pub name: String,
    pub creation_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_in_days: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRecord {
    pub name: String,
    /// Names the stream's batch keys and starts its event ids.
    pub id: u64,
    pub creation_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_event_timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ingestion_time: Option<i64>,
    #[serde(default)]
    pub stored_bytes: u64,
    /// The oldest batch still stored.
    #[serde(default)]
    pub first_batch: u64,
    /// The number the next batch takes.
    #[serde(default)]
    pub next_batch: u64,
    /// The next agent batch sequence expected: one below it was stored already.
    #[serde(default)]
    pub agent_next: u64,
}

impl StreamRecord {
    pub fn new(name: &str, now: i64) -> StreamRecord {
        StreamRecord {
            name: name.to_string(),
            id: rand::random::<u64>() >> 1,
            creation_time: now,
            first_event_timestamp: None,
            last_event_timestamp: None,
            last_ingestion_time: None,
            stored_bytes: 0,
            first_batch: 0,
            next_batch: 0,
            agent_next: 0,
        }
    }

    /// The upload sequence token AWS still reports (it no longer checks it).
    pub fn sequence_token(&self) -> String {
        format!("{:056}", self.next_batch as u128 + 1)
    }

    /// Records a stored batch in the stream's statistics.
    pub fn account(&mut self, batch: &Batch) {
        if let (Some(lo), Some(hi)) = (batch.min_timestamp(), batch.max_timestamp()) {
            self.first_event_timestamp = Some(self.first_event_timestamp.map_or(lo, |t| t.min(lo)));
            self.last_event_timestamp = Some(self.last_event_timestamp.map_or(hi, |t| t.max(hi)));
        }
        self.last_ingestion_time = Some(batch.ingestion_time);
        self.stored_bytes += batch.size();
        self.next_batch += 1;
    }
}

/// One stored batch of events, in the order they were put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub ingestion_time: i64,
    /// `(timestamp, message)`.
    pub events: Vec<(i64, String)>,
}

/// Why a stored batch could not be read.
#[derive(Debug, thiserror::Error)]
#[error("a stored log batch is damaged: {0}")]
pub struct BatchError(&'static str);

const MAGIC: &[u8; 4] = b"LGB1";

impl Batch {
    /// The bytes CloudWatch Logs counts: each message plus 26.
    pub fn size(&self) -> u64 {
        self.events.iter().map(|(_, m)| m.len() as u64 + 26).sum()
    }
    pub fn min_timestamp(&self) -> Option<i64> {
        self.events.iter().map(|(t, _)| *t).min()
    }
    pub fn max_timestamp(&self) -> Option<i64> {
        self.events.iter().map(|(t, _)| *t).max()
    }

    pub fn encode(&self) -> Vec<u8> {
        let body: usize = self.events.iter().map(|(_, m)| 12 + m.len()).sum();
        let mut out = Vec::with_capacity(16 + body);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.ingestion_time.to_le_bytes());
        out.extend_from_slice(&(self.events.len() as u32).to_le_bytes());
        for (t, m) in &self.events {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&(m.len() as u32).to_le_bytes());
            out.extend_from_slice(m.as_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Batch, BatchError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(BatchError("unknown format"));
        }
        let ingestion_time = i64::from_le_bytes(r.array()?);
        let count = u32::from_le_bytes(r.array()?) as usize;
        let mut events = Vec::with_capacity(count.min(10_000));
        for _ in 0..count {
            let t = i64::from_le_bytes(r.array()?);
            let len = u32::from_le_bytes(r.array()?) as usize;
            let m = std::str::from_utf8(r.take(len)?).map_err(|_| BatchError("a message is not UTF-8"))?;
            events.push((t, m.to_string()));
        }
        Ok(Batch { ingestion_time, events })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if self.0.len() < n {
            return Err(BatchError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], BatchError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_damage_is_refused() {
        let b = Batch { ingestion_time: 7, events: vec![(5, "héllo \u{0}".into()), (6, String::new())] };
        assert_eq!(Batch::decode(&b.encode()).unwrap(), b);
        let bytes = b.encode();
        assert!(Batch::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Batch::decode(b"nope").is_err());
        assert_eq!(b.size(), 8 + 26 + 26);
    }

    #[test]
    fn a_streams_statistics_follow_its_batches() {
        let mut s = StreamRecord::new("s", 1);
        s.account(&Batch { ingestion_time: 10, events: vec![(4, "a".into()), (2, "b".into())] });
        s.account(&Batch { ingestion_time: 11, events: vec![(9, "c".into())] });
        assert_eq!((s.first_event_timestamp, s.last_event_timestamp), (Some(2), Some(9)));
        assert_eq!((s.next_batch, s.last_ingestion_time, s.stored_bytes), (2, Some(11), 81));
    }

    #[test]
    fn keys_keep_groups_and_streams_apart() {
        assert!(stream_key("/ecs/web", "a/b/c").starts_with(&streams_of("/ecs/web")));
        assert!(!stream_key("/ecs/web2", "x").starts_with(&streams_of("/ecs/web")));
        assert!(batch_key(1, 2) < batch_key(1, 10));
    }
}
