//! AWS Cloud Map on the control plane: the `servicediscovery` JSON API (namespaces, services,
//! instances, operations, discovery) and a DNS server answering for private DNS namespaces from
//! the records of `flotilla-endpoints`, held in memory and fed by the store's watch.

pub mod api;
pub mod dns;

use std::sync::Arc;

/// The Cloud Map API, to add to the server's extensions (`ServerConfig::extensions`).
pub fn extension() -> Arc<dyn flotilla_api::Extension> {
    Arc::new(api::CloudMapApi)
}
