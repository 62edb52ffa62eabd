//! Elastic Load Balancing v2 on the control plane: the ELBv2 query API (load balancers, target
//! groups, listeners, rules, targets, health) served on the control plane's listener, and what
//! load balancer nodes talk to (their configuration, built from the records of
//! `flotilla-endpoints`, and the health they report). The nodes themselves are `flotilla-lb`.
//!
//! [`api::extension`] is the API, registered with the server as an `Extension`; [`nodes`] serves
//! the nodes' join, configuration and reports and runs the draining and load balancer state loops.

pub mod api;
pub mod nodes;
