//! Elastic Load Balancing v2 on the control plane: the ELBv2 query API (load balancers, target
//! groups, listeners, rules, targets, health) served on the control plane's listener, and what
//! load balancer nodes talk to (their configuration, built from the records of
//! `flotilla-endpoints`, and the health they report). The nodes themselves are `flotilla-lb`.

pub mod nodes;
