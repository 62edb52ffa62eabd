//! The DNS server's in-memory view: every private DNS namespace's names, compiled from the
//! Cloud Map records, and every load balancer's name (see [`super::elb`]), into a map from
//! lowercase name to what it answers. [`Records`] mirrors the
//! raw records (patched from the store's watch); [`Table::build`] compiles them, and the server
//! swaps the new table in whole, so a query never reads the store nor waits on a lock.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use flotilla_endpoints::cloudmap::{
    self as cm, HealthStatus, Instance, Namespace, NamespaceType, RecordType, RoutingPolicy, Service,
};
use flotilla_endpoints::{codec, keys};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};

use super::elb::LbRecords;

/// The raw Cloud Map records, keyed as in the store, and what the load balancer records say.
#[derive(Debug, Default, Clone)]
pub struct Records {
    pub namespaces: HashMap<String, Namespace>,
    pub services: HashMap<String, Service>,
    /// Service id, then instance id.
    pub instances: HashMap<String, BTreeMap<String, Instance>>,
    pub elb: LbRecords,
}

impl Records {
    /// Applies one put (`Some(value)`) or delete of `key`; whether the table may have to change.
    /// Keys other than namespaces, services, instances, load balancers and nodes (operations,
    /// indexes) are ignored. A record that does not decode is skipped.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> bool {
        if key.starts_with(super::elb::ROOT) {
            return self.elb.apply(key, value);
        }
        if let Some(id) = key.strip_prefix(keys::NAMESPACE) {
            match value.and_then(|v| codec::decode::<Namespace>(v).ok()) {
                Some(ns) => self.namespaces.insert(id.to_string(), ns),
                None => self.namespaces.remove(id),
            };
        } else if let Some(id) = key.strip_prefix(keys::SERVICE) {
            match value.and_then(|v| codec::decode::<Service>(v).ok()) {
                Some(svc) => self.services.insert(id.to_string(), svc),
                None => self.services.remove(id),
            };
        } else if let Some(rest) = key.strip_prefix(keys::INSTANCE) {
            let Some((service_id, instance_id)) = rest.split_once('/') else { return false };
            match value.and_then(|v| codec::decode::<Instance>(v).ok()) {
                Some(i) => {
                    self.instances.entry(service_id.to_string()).or_default().insert(instance_id.to_string(), i);
                }
                None => {
                    if let Some(of) = self.instances.get_mut(service_id) {
                        of.remove(instance_id);
                        if of.is_empty() {
                            self.instances.remove(service_id);
                        }
                    }
                }
            }
        } else {
            return false;
        }
        true
    }
}

/// One private namespace: its origin and SOA.
#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: Name,
    pub soa: Record,
}

/// One instance as the service's records show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `<instance id>.<service>.<namespace>.`, the SRV target.
    pub host: Name,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    pub port: Option<u16>,
    pub cname: Option<Name>,
}

/// A service's name: its records' TTLs and its instances split by health.
#[derive(Debug, Clone)]
pub struct ServiceNode {
    pub zone: usize,
    pub policy: RoutingPolicy,
    pub ttl: BTreeMap<RecordTypeKey, u32>,
    pub healthy: Vec<Endpoint>,
    pub unhealthy: Vec<Endpoint>,
}

/// [`RecordType`] made orderable for the TTL map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordTypeKey {
    A,
    Aaaa,
    Srv,
    Cname,
}

impl From<RecordType> for RecordTypeKey {
    fn from(r: RecordType) -> Self {
        match r {
            RecordType::A => RecordTypeKey::A,
            RecordType::Aaaa => RecordTypeKey::Aaaa,
            RecordType::Srv => RecordTypeKey::Srv,
            RecordType::Cname => RecordTypeKey::Cname,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Node {
    /// The namespace's own name (answers SOA).
    Apex(usize),
    /// `<service>.<namespace>`.
    Service(Arc<ServiceNode>),
    /// `<instance>.<service>.<namespace>`: its own A/AAAA records.
    Instance { zone: usize, endpoint: Box<Endpoint>, a_ttl: Option<u32>, aaaa_ttl: Option<u32> },
    /// A name with nothing of its own but names below it (`_tcp.<namespace>` for `_x._tcp`):
    /// NODATA rather than NXDOMAIN.
    Empty(usize),
    /// A load balancer's DNS name: its nodes' addresses.
    LoadBalancer { zone: usize, nodes: Arc<[IpAddr]> },
}

/// What a name is, as the server sees it.
#[derive(Debug)]
pub enum Lookup<'a> {
    Found(&'a Node),
    /// Inside this zone but nothing there.
    NxDomain(&'a Zone),
    /// Outside every private namespace: forward it.
    Outside,
}

#[derive(Debug, Default)]
pub struct Table {
    pub zones: Vec<Zone>,
    /// Lowercase names without the final dot.
    pub names: HashMap<String, Node>,
    /// The store revision the table reflects.
    pub revision: u64,
}

/// `name` lowercased without its final dot: the table's key.
pub fn key_of(name: &str) -> String {
    let mut k = name.strip_suffix('.').unwrap_or(name).to_string();
    k.make_ascii_lowercase();
    k
}

pub(super) fn fqdn(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n)
}

pub(super) fn soa(origin: &Name, ttl: u32) -> Record {
    let mname =
        Name::from_ascii("ns1").ok().and_then(|n| n.append_domain(origin).ok()).unwrap_or_else(|| origin.clone());
    let rname = Name::from_ascii("hostmaster")
        .ok()
        .and_then(|n| n.append_domain(origin).ok())
        .unwrap_or_else(|| origin.clone());
    Record::from_rdata(origin.clone(), ttl, RData::SOA(SOA::new(mname, rname, 1, 7200, 900, 1_209_600, ttl)))
}

/// Whether DNS treats the instance as healthy: always, unless the service checks health.
fn healthy(svc: &Service, i: &Instance) -> bool {
    !(svc.custom_health || svc.health_check_config.is_some()) || i.health == HealthStatus::Healthy
}

impl Table {
    pub fn build(records: &Records, revision: u64) -> Table {
        let mut table = Table { revision, ..Table::default() };
        let mut zone_of: HashMap<&str, (usize, String)> = HashMap::new();
        let mut namespaces: Vec<&Namespace> =
            records.namespaces.values().filter(|n| n.kind == NamespaceType::DnsPrivate).collect();
        namespaces.sort_by(|a, b| a.id.cmp(&b.id));
        for ns in namespaces {
            let key = key_of(&ns.name);
            let Some(origin) = fqdn(&key) else { continue };
            let index = table.zones.len();
            table.zones.push(Zone { soa: soa(&origin, ns.soa_ttl.unwrap_or(15)), origin });
            table.names.insert(key.clone(), Node::Apex(index));
            zone_of.insert(ns.id.as_str(), (index, key));
        }
        let empty = BTreeMap::new();
        for svc in records.services.values() {
            let (Some((zone, origin)), Some(dns)) = (zone_of.get(svc.namespace_id.as_str()), &svc.dns_config) else {
                continue;
            };
            let name = format!("{}.{origin}", key_of(&svc.name));
            let ttl: BTreeMap<RecordTypeKey, u32> = dns.records.iter().map(|r| (r.kind.into(), r.ttl)).collect();
            let mut node = ServiceNode {
                zone: *zone,
                policy: dns.routing_policy,
                ttl,
                healthy: Vec::new(),
                unhealthy: Vec::new(),
            };
            for i in records.instances.get(&svc.id).unwrap_or(&empty).values() {
                let host_key = format!("{}.{name}", key_of(&i.id));
                let Some(host) = fqdn(&host_key) else { continue };
                let attr = |k: &str| i.attributes.get(k);
                let endpoint = Endpoint {
                    host,
                    v4: attr(cm::IPV4).and_then(|v| v.parse().ok()),
                    v6: attr(cm::IPV6).and_then(|v| v.parse().ok()),
                    port: attr(cm::PORT).and_then(|v| v.parse().ok()),
                    cname: attr(cm::CNAME).and_then(|v| fqdn(v)),
                };
                let a_ttl = node.ttl.get(&RecordTypeKey::A).or(node.ttl.get(&RecordTypeKey::Srv)).copied();
                let aaaa_ttl = node.ttl.get(&RecordTypeKey::Aaaa).or(node.ttl.get(&RecordTypeKey::Srv)).copied();
                table.names.insert(
                    host_key,
                    Node::Instance { zone: *zone, endpoint: Box::new(endpoint.clone()), a_ttl, aaaa_ttl },
                );
                if healthy(svc, i) {
                    node.healthy.push(endpoint);
                } else {
                    node.unhealthy.push(endpoint);
                }
            }
            // Names between the service and its namespace exist, empty (`_tcp` of `_x._tcp`).
            let mut rest = name.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if parent == origin {
                    break;
                }
                table.names.entry(parent.to_string()).or_insert(Node::Empty(*zone));
                rest = parent;
            }
            table.names.insert(name, Node::Service(Arc::new(node)));
        }
        records.elb.add_to(&mut table);
        table
    }

    /// What `key` (see [`key_of`]) is.
    pub fn lookup(&self, key: &str) -> Lookup<'_> {
        if let Some(node) = self.names.get(key) {
            return Lookup::Found(node);
        }
        // The longest namespace the name falls in, by walking up its labels.
        let mut rest = key;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(Node::Apex(zone)) = self.names.get(parent) {
                return Lookup::NxDomain(&self.zones[*zone]);
            }
            rest = parent;
        }
        Lookup::Outside
    }
}
