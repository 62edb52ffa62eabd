//! placeholder
pub mod hollow;
pub mod runtime;
pub mod session;
