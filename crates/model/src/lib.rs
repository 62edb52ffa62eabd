//! The Amazon ECS wire shapes, exactly as the service model names them.
//!
//! `generated.rs` is produced by `tools/gen_model.py` from botocore's ECS model: one struct per
//! structure shape (every member optional, absent members left out of the JSON), the enum values,
//! and `Validate` impls that check required members, enum values, lengths and ranges the way ECS
//! does, reporting the full path of the offending field. The API crate decodes requests into these
//! types and answers with them; the store keeps records built from them.

pub mod arn;
#[rustfmt::skip]
mod generated;
pub mod rules;
pub mod timestamp;
pub mod validate;

pub use generated::*;
pub use timestamp::Timestamp;
pub use validate::{Invalid, Path, Validate};
