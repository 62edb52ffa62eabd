//! The domain layer, under both the API handlers and the controllers: finding what a request
//! names ([`lookup`]), the rules several operations share ([`tags`], [`attributes`]), launching tasks ([`launch`],
//! the one path RunTask, StartTask and services take) and stopping them ([`stop`]). It reads the
//! cache and writes the store through the context; it never imports a handler or a controller,
//! so either can call it without a circle.

pub mod association;
pub mod attributes;
pub mod capacity;
pub mod fargate;
pub mod hosts;
pub mod launch;
pub mod lookup;
pub mod stop;
pub mod subnets;
pub mod tags;
