//! What the control plane keeps: the record types, where they live in the store, how they are
//! encoded, and the in-memory cache that serves reads.

pub mod cache;
pub mod codec;
pub mod gpus;
pub mod indexes;
pub mod keys;
pub mod records;
pub mod snapshots;
pub mod tasks;
