//! The AWS query protocol, shared by the services that speak it (EC2 Auto Scaling, ELBv2) and by
//! EC2's own dialect of it. A request is a form-encoded body naming an `Action` and a `Version`,
//! with lists and structures flattened into dotted parameter names; an answer is XML. This crate
//! knows the wire only: `params` decodes a body into [`Params`] with typed accessors whose errors
//! name the parameter, `xml` writes answers, and `error` shapes [`QueryError`] into each
//! dialect's error document. The services' own shapes and rules live with the services.

pub mod error;
pub mod params;
pub mod xml;

pub use error::{Dialect, QueryError};
pub use params::{Filter, Params, TagSpecification};
pub use xml::Xml;
