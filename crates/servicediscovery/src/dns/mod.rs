//! The DNS server for private DNS namespaces and load balancer names. `table` compiles the Cloud
//! Map records (and, through `elb`, the load balancers and their nodes) into an in-memory name map
//! that `follow` keeps current from the store's watch; `answer` answers one query from it (`fast`
//! caches fixed answers per responder thread); `forward` relays names outside every namespace to
//! the host's resolvers; `server` runs the UDP and TCP listeners.

pub mod answer;
pub mod elb;
pub mod fast;
pub mod follow;
pub mod forward;
pub mod server;
pub mod table;

pub use server::{serve, start, DnsServer, Settings};
