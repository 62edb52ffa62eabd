//! Load balancers' DNS names. Each ELBv2 load balancer's `dns_name` (`NAME-ID.REGION.elb.localhost`)
//! answers with the advertise address of every load balancer node (`elbv2/node/<id>`), A for IPv4
//! and AAAA for IPv6, so a client that resolves the name reaches a node that serves it. Names under
//! [`DOMAIN`] that no load balancer has are NXDOMAIN here rather than forwarded: no upstream knows
//! them. [`LbRecords`] mirrors just the fields the answers need, so a node's heartbeat (a new
//! `last_seen_ms`, same address) changes nothing and does not rebuild the table.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use flotilla_endpoints::elb::LoadBalancer;
use flotilla_endpoints::{codec, keys};
use serde::Deserialize;

use super::table::{fqdn, key_of, soa, Node, Table, Zone};

/// Every ELBv2 key starts with this.
pub const ROOT: &str = "elbv2/";
/// Where the load balancer nodes' records live (written by the ELBv2 extension).
pub const NODE: &str = "elbv2/node/";
/// The domain every load balancer's DNS name falls in.
pub const DOMAIN: &str = "elb.localhost";
/// The TTL of a load balancer name's addresses.
pub const TTL: u32 = 60;
/// How long a resolver may remember that a name under [`DOMAIN`] does not exist: short, since a
/// load balancer created a moment later should resolve at once.
pub const NEGATIVE_TTL: u32 = 5;

/// The one field of a node record the answers use (the rest is the ELBv2 extension's).
#[derive(Deserialize)]
struct NodeAddress {
    advertise_address: String,
}

/// What the load balancer records say about names.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LbRecords {
    /// Each load balancer's DNS name (see [`key_of`]) by load balancer id.
    pub names: HashMap<String, String>,
    /// Each node's advertise address by node id.
    pub nodes: HashMap<String, IpAddr>,
}

impl LbRecords {
    /// Applies one put (`Some(value)`) or delete of `key`; whether it was a load balancer or node
    /// key whose answer-relevant field changed. A record that does not decode (or a node whose
    /// address is not an IP) counts as absent.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> bool {
        if let Some(id) = key.strip_prefix(keys::LOAD_BALANCER).filter(|id| !id.contains('/')) {
            let name = value.and_then(|v| codec::decode::<LoadBalancer>(v).ok()).map(|lb| key_of(&lb.dns_name));
            return set(&mut self.names, id, name);
        }
        if let Some(id) = key.strip_prefix(NODE).filter(|id| !id.contains('/')) {
            let address = value
                .and_then(|v| codec::decode::<NodeAddress>(v).ok())
                .and_then(|n| n.advertise_address.trim().parse::<IpAddr>().ok());
            return set(&mut self.nodes, id, address);
        }
        false
    }

    /// Every node's address, once each, in order.
    pub fn addresses(&self) -> Arc<[IpAddr]> {
        self.nodes.values().copied().collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// Adds [`DOMAIN`]'s zone and every load balancer's name to `table`.
    pub fn add_to(&self, table: &mut Table) {
        let Some(origin) = fqdn(DOMAIN) else { return };
        let zone = table.zones.len();
        table.zones.push(Zone { soa: soa(&origin, NEGATIVE_TTL), origin });
        table.names.insert(DOMAIN.to_string(), Node::Apex(zone));
        let nodes = self.addresses();
        for name in self.names.values() {
            if fqdn(name).is_none() {
                continue;
            }
            table.names.insert(name.clone(), Node::LoadBalancer { zone, nodes: nodes.clone() });
        }
        // Names between a load balancer's and the domain exist, empty (`us-east-1.elb.localhost`).
        let under = format!(".{DOMAIN}");
        for name in self.names.values() {
            let mut rest = name.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if !parent.ends_with(&under) {
                    break;
                }
                table.names.entry(parent.to_string()).or_insert(Node::Empty(zone));
                rest = parent;
            }
        }
    }
}

/// Sets or removes `map[id]`; whether that changed it.
fn set<V: PartialEq>(map: &mut HashMap<String, V>, id: &str, value: Option<V>) -> bool {
    match value {
        Some(v) if map.get(id) == Some(&v) => false,
        Some(v) => {
            map.insert(id.to_string(), v);
            true
        }
        None => map.remove(id).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::answer::tests::ask;
    use crate::dns::answer::{answer, Outcome};
    use crate::dns::fast;
    use crate::dns::table::{Lookup, Records};
    use flotilla_endpoints::elb::LoadBalancerType;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};
    use serde_json::json;

    const NAME: &str = "demo-0123456789abcdef.us-east-1.elb.localhost";

    fn lb(id: &str, dns_name: &str) -> Vec<u8> {
        codec::encode(&LoadBalancer {
            id: id.into(),
            arn: format!("arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/demo/{id}"),
            name: "demo".into(),
            kind: LoadBalancerType::Application,
            dns_name: dns_name.into(),
            scheme: "internet-facing".into(),
            vpc_id: None,
            zones: vec![],
            security_groups: vec![],
            ip_address_type: "ipv4".into(),
            state: "active".into(),
            attributes: Default::default(),
            tags: vec![],
            created_at_ms: 0,
        })
    }

    fn node(id: &str, address: &str, last_seen_ms: i64) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"id": id, "advertise_address": address, "joined_at_ms": 1, "last_seen_ms": last_seen_ms}),
        )
        .unwrap()
    }

    fn records(nodes: &[(&str, &str)]) -> Records {
        let mut r = Records::default();
        assert!(r.apply(&keys::load_balancer("0123456789abcdef"), Some(&lb("0123456789abcdef", NAME))));
        for (id, address) in nodes {
            assert!(r.apply(&format!("{NODE}{id}"), Some(&node(id, address, 1))));
        }
        r
    }

    fn rdata(m: &Message) -> Vec<String> {
        let mut v: Vec<String> = m
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => format!("A {} {}", a.0, r.ttl),
                RData::AAAA(a) => format!("AAAA {} {}", a.0, r.ttl),
                other => format!("{other:?}"),
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_load_balancer_name_answers_every_nodes_address_case_insensitively() {
        let table = Table::build(&records(&[("lbn-1", "10.0.0.1"), ("lbn-2", "10.0.0.2"), ("lbn-3", "fd00::3")]), 1);
        let m = ask(&table, "Demo-0123456789ABCDEF.us-east-1.ELB.localhost.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(rdata(&m), vec!["A 10.0.0.1 60", "A 10.0.0.2 60"]);
        let m = ask(&table, &format!("{NAME}."), RecordType::AAAA);
        assert_eq!(rdata(&m), vec!["AAAA fd00::3 60"]);
        assert_eq!(ask(&table, &format!("{NAME}."), RecordType::ANY).answers.len(), 3);
        assert!(fast::fixed(&table, NAME), "the answer is the same every time, so responders may cache it");
    }

    #[test]
    fn no_nodes_or_no_address_of_the_type_is_nodata_with_the_soa() {
        let table = Table::build(&records(&[]), 1);
        let m = ask(&table, &format!("{NAME}."), RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(m.authorities[0].ttl, NEGATIVE_TTL);
        let table = Table::build(&records(&[("lbn-1", "10.0.0.1")]), 1);
        let m = ask(&table, &format!("{NAME}."), RecordType::AAAA);
        assert!(m.answers.is_empty() && m.authorities.len() == 1);
        // The name between the load balancer's and the domain exists, empty.
        let m = ask(&table, "us-east-1.elb.localhost.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn unknown_names_under_the_domain_are_nxdomain_and_others_forwarded() {
        let table = Table::build(&Records::default(), 1);
        let m = ask(&table, "x.us-east-1.elb.localhost.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities[0].ttl, NEGATIVE_TTL);
        let table = Table::build(&records(&[("lbn-1", "10.0.0.1")]), 1);
        assert!(matches!(table.lookup("other-1.us-east-1.elb.localhost"), Lookup::NxDomain(_)));
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii("localhost.").unwrap(), RecordType::A));
        assert!(matches!(answer(&table, &q, &mut rand::thread_rng()), Outcome::Forward));
    }

    #[test]
    fn heartbeats_change_nothing_while_joins_leaves_and_deletes_do() {
        let mut r = records(&[("lbn-1", "10.0.0.1")]);
        assert!(!r.apply(&format!("{NODE}lbn-1"), Some(&node("lbn-1", "10.0.0.1", 99))), "a heartbeat");
        assert!(r.apply(&format!("{NODE}lbn-1"), Some(&node("lbn-1", "10.0.0.9", 99))), "a new address");
        assert!(r.apply(&format!("{NODE}lbn-2"), Some(&node("lbn-2", "10.0.0.9", 1))));
        assert_eq!(&*r.elb.addresses(), &["10.0.0.9".parse::<IpAddr>().unwrap()], "one record per address");
        assert!(!r.apply(&format!("{NODE}lbn-3"), Some(&node("lbn-3", "not an ip", 1))), "not an IP");
        assert!(r.apply(&format!("{NODE}lbn-1"), None));
        assert!(!r.apply(&format!("{NODE}lbn-1"), None), "already gone");
        assert!(!r.apply("elbv2/target-health/tg/i-1:80", Some(b"{}")), "other ELBv2 keys are not followed");
        assert!(!r.apply("servicediscovery/operation/op-1", Some(b"{}")));
        assert!(r.apply(&keys::load_balancer("0123456789abcdef"), None));
        let table = Table::build(&r, 2);
        assert!(matches!(table.lookup(NAME), Lookup::NxDomain(_)), "a deleted load balancer's name is gone");
    }
}
