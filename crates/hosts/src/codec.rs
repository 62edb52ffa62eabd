//! How these records are stored: plain JSON, the same for every writer (the EC2 and Auto Scaling
//! APIs, the group loop, ECS's managed scaling), so each reads what the others write.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // The records are plain structs of strings, numbers and lists: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        let tag = crate::Tag { key: "k".into(), value: "v".into(), propagate_at_launch: true };
        assert_eq!(super::decode::<crate::Tag>(&super::encode(&tag)).unwrap(), tag);
    }
}
