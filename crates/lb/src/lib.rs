//! A load balancer node: the data plane of ELBv2. It holds its load balancers' listeners,
//! rules and targets in memory (a `NodeConfig` from the control plane, swapped whole at each
//! change), proxies HTTP/1.1 and TCP to healthy targets, runs the target groups' health checks
//! and reports them. A slow control plane never slows a request in flight.
