//! What the control plane keeps: the record types, where they live in the store, how they are
//! encoded, and the in-memory cache that serves reads.

pub mod cache;
pub mod codec;
pub mod keys;
pub mod locks;
pub mod records;
pub mod snapshots;
pub mod tasks;
