//! The records of Flotilla's self-hosted EC2 and EC2 Auto Scaling: launch templates, Auto Scaling
//! groups, the hosts they launch, their scaling activities, the instance type table and the
//! region's default VPC. It is the contract between the services that write them (the
//! `flotilla-autoscaling` crate: the EC2 and Auto Scaling APIs, the provisioners and the group
//! loop) and the ECS control plane that reads them (capacity providers and managed scaling). It
//! holds shapes and pure rules only: no I/O, so both sides agree on one layout.

pub mod codec;
pub mod ecs_config;
pub mod instance_types;
pub mod keys;
pub mod network;
pub mod records;
pub mod template;

pub use instance_types::InstanceType;
pub use records::*;
