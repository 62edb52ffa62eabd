//! Stored values: a one-byte version tag, then the record as JSON. Version 1 is the only one so
//! far; when a record's shape changes incompatibly, old tags stay readable here and are migrated
//! forward on decode.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys;
use super::records::Record;

const V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("stored value under {key} has unknown version tag {tag}")]
    UnknownVersion { key: String, tag: u8 },
    #[error("stored value under {key} is empty")]
    Empty { key: String },
    #[error("stored value under {key} does not decode: {source}")]
    Json { key: String, source: serde_json::Error },
    #[error("key {0} is outside every known prefix")]
    UnknownKey(String),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.push(V1);
    // Serializing our own record types cannot fail: they hold no maps with non-string keys.
    serde_json::to_writer(&mut out, value).expect("records always serialize");
    out
}

pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(json_of(key, bytes)?).map_err(|source| CodecError::Json { key: key.into(), source })
}

/// The JSON of a stored value, for readers that take it apart themselves.
pub fn json_of<'a>(key: &str, bytes: &'a [u8]) -> Result<&'a [u8], CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty { key: key.into() }),
        Some((&V1, json)) => Ok(json),
        Some((&tag, _)) => Err(CodecError::UnknownVersion { key: key.into(), tag }),
    }
}

/// Decodes any stored value by the prefix of its key.
pub fn decode_record(key: &str, bytes: &[u8]) -> Result<Record, CodecError> {
    Ok(if key.starts_with(keys::CLUSTER) {
        Record::Cluster(decode(key, bytes)?)
    } else if key.starts_with(keys::TASK_DEFINITION) {
        Record::TaskDefinition(decode(key, bytes)?)
    } else if key.starts_with(keys::INSTANCE) {
        Record::ContainerInstance(decode(key, bytes)?)
    } else if key.starts_with(keys::TASK) {
        Record::Task(decode(key, bytes)?)
    } else if key.starts_with(keys::SERVICE) {
        Record::Service(decode(key, bytes)?)
    } else if key.starts_with(keys::IDEMPOTENCY) {
        Record::Idempotency(decode(key, bytes)?)
    } else if key.starts_with(keys::ACCOUNT_SETTING) {
        Record::AccountSetting(decode(key, bytes)?)
    } else if key.starts_with(keys::PLACEMENT) {
        Record::Placement(decode(key, bytes)?)
    } else if key.starts_with(keys::CAPACITY_PROVIDER) {
        Record::CapacityProvider(decode(key, bytes)?)
    } else {
        return Err(CodecError::UnknownKey(key.into()));
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::Cluster;

    #[test]
    fn round_trip_and_version_checks() {
        let c = Cluster { cluster_name: Some("x".into()), ..Default::default() };
        let bytes = encode(&c);
        assert_eq!(bytes[0], 1);
        assert_eq!(decode_record("cluster/x", &bytes).unwrap(), Record::Cluster(c));
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(matches!(decode_record("cluster/x", &bad), Err(CodecError::UnknownVersion { tag: 9, .. })));
        assert!(matches!(decode_record("cluster/x", &[]), Err(CodecError::Empty { .. })));
        assert!(matches!(decode_record("zzz/x", &bytes), Err(CodecError::UnknownKey(_))));
    }
}
