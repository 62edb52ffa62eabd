//! Benchmarks of the Flotilla control plane, run the way users run it: the real `flotilla server`
//! binary as a child process, SigV4 signing on, driven over loopback by a closed-loop load
//! generator, next to a bare HTTP server (the floor) driven by the same generator in the same
//! run. The `api-bench` binary puts it together; see this crate's README for the figures.

pub mod console;
pub mod floor;
pub mod ha;
pub mod load;
pub mod procs;
pub mod query;
pub mod report;
pub mod runtask;
pub mod seed;
pub mod workload;
