//! How these records are stored: plain JSON, the same for every writer (the ELBv2 and Cloud Map
//! APIs, their loops, ECS's service controller), so each reads what the others write.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // The records are plain structs of strings, numbers, maps and lists: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}
