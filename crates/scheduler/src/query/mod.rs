//! ECS's cluster query language: the expressions of `memberOf` placement constraints and of
//! ListContainerInstances' `filter`. An expression is parsed once into an AST ([`parse`]), then
//! evaluated against any container instance that implements [`Facts`] without allocating.
//!
//! Choices the ECS documentation leaves open, made here and tested:
//! - keywords (`and`, `or`, `not`, word operators such as `not_in`) and the built-in subject names
//!   are case-insensitive; attribute names, task groups and values are compared case-sensitively;
//! - comparisons on a missing attribute are false, except `!exists` (the documentation reads
//!   `attribute:stack != prod` as "instances with stack, unless it is prod");
//! - `task:group` is many-valued: `==`, `in`, `=~` and `exists` hold when some task group on the
//!   instance passes, and `!=`, `not_in`, `!~` and `!exists` are their negations (anti-affinity);
//! - `>`, `<` and friends compare numbers as numbers and anything else as a dotted version;
//! - `=~` takes a regular expression that must match the whole value, and a `*` with nothing to
//!   repeat is a wildcard (`*.large`);
//! - `registeredAt` compares against the span its argument denotes (a whole day for a date).

mod ast;
mod parse;
mod value;

pub use ast::{Expr, Facts};
pub use parse::{parse, ParseError, MAX_EXPRESSION_CHARS};

pub(crate) use ast::{Leaf, Node, Subject};
