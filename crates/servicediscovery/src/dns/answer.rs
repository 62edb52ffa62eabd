//! Answering one query from a [`Table`]: Route 53's choice of records for a Cloud Map service
//! (up to eight healthy instances, a random subset if more, the unhealthy ones when none is
//! healthy; one random instance for WEIGHTED), SRV targets with their addresses in the additional
//! section, a load balancer's name with every node's address (A or AAAA), NXDOMAIN/NODATA with
//! the zone's SOA, and the size rules of UDP (512 bytes, or the
//! client's EDNS0 size, else TC so the client retries over TCP).

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;
use rand::Rng;

use super::elb;
use super::table::{key_of, Endpoint, Lookup, Node, RecordTypeKey, ServiceNode, Table};
use flotilla_endpoints::cloudmap::RoutingPolicy;

/// Route 53 answers with at most this many records for a multivalue name.
pub const MAX_ANSWERS: usize = 8;
/// The UDP payload size this server offers and accepts under EDNS0 (the DNS flag day's value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// What to do with a query.
pub enum Outcome {
    /// Send this answer.
    Answer(Message),
    /// The name is outside every namespace: ask the upstream resolvers.
    Forward,
}

/// The instances a service's name answers with this time.
pub fn choose<'a>(node: &'a ServiceNode, rng: &mut impl Rng) -> Vec<&'a Endpoint> {
    let pool = if node.healthy.is_empty() { &node.unhealthy } else { &node.healthy };
    match node.policy {
        RoutingPolicy::Weighted => pool.choose(rng).into_iter().collect(),
        RoutingPolicy::Multivalue if pool.len() <= MAX_ANSWERS => pool.iter().collect(),
        RoutingPolicy::Multivalue => pool.choose_multiple(rng, MAX_ANSWERS).collect(),
    }
}

fn response_to(request: &Message) -> Message {
    let mut m = Message::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
    m.metadata = Metadata::response_from_request(&request.metadata);
    m.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(edns);
    }
    m
}

pub fn error(request: &Message, code: ResponseCode) -> Message {
    let mut m = response_to(request);
    m.metadata.response_code = code;
    m
}

fn address_records(
    name: &Name,
    e: &Endpoint,
    want: RecordType,
    a_ttl: Option<u32>,
    aaaa_ttl: Option<u32>,
) -> Vec<Record> {
    let mut out = Vec::new();
    if matches!(want, RecordType::A | RecordType::ANY) {
        if let (Some(ip), Some(ttl)) = (e.v4, a_ttl) {
            out.push(Record::from_rdata(name.clone(), ttl, RData::A(A(ip))));
        }
    }
    if matches!(want, RecordType::AAAA | RecordType::ANY) {
        if let (Some(ip), Some(ttl)) = (e.v6, aaaa_ttl) {
            out.push(Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(ip))));
        }
    }
    out
}

/// A load balancer name's records: one per node address of the asked type.
fn node_records(name: &Name, nodes: &[IpAddr], want: RecordType) -> Vec<Record> {
    let any = want == RecordType::ANY;
    nodes
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) if any || want == RecordType::A => Some(RData::A(A(*v4))),
            IpAddr::V6(v6) if any || want == RecordType::AAAA => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|data| Record::from_rdata(name.clone(), elb::TTL, data))
        .collect()
}

fn service_answer(m: &mut Message, qname: &Name, qtype: RecordType, node: &ServiceNode, rng: &mut impl Rng) {
    let ttl = |k| node.ttl.get(&k).copied();
    let chosen = choose(node, rng);
    if let Some(cname_ttl) = ttl(RecordTypeKey::Cname) {
        if let Some(target) = chosen.first().and_then(|e| e.cname.clone()) {
            m.add_answer(Record::from_rdata(qname.clone(), cname_ttl, RData::CNAME(CNAME(target))));
        }
        return;
    }
    let (a_ttl, aaaa_ttl) = (ttl(RecordTypeKey::A), ttl(RecordTypeKey::Aaaa));
    for e in &chosen {
        m.add_answers(address_records(qname, e, qtype, a_ttl, aaaa_ttl));
    }
    if let (true, Some(srv_ttl)) = (matches!(qtype, RecordType::SRV | RecordType::ANY), ttl(RecordTypeKey::Srv)) {
        for e in &chosen {
            let Some(port) = e.port else { continue };
            m.add_answer(Record::from_rdata(qname.clone(), srv_ttl, RData::SRV(SRV::new(1, 1, port, e.host.clone()))));
            // The targets' own records carry the A/AAAA TTL, or the SRV one without A/AAAA.
            m.add_additionals(address_records(
                &e.host,
                e,
                RecordType::ANY,
                a_ttl.or(Some(srv_ttl)),
                aaaa_ttl.or(Some(srv_ttl)),
            ));
        }
    }
}

/// The answer to `request` from `table`, or [`Outcome::Forward`].
pub fn answer(table: &Table, request: &Message, rng: &mut impl Rng) -> Outcome {
    if request.metadata.message_type != MessageType::Query || request.metadata.op_code != OpCode::Query {
        return Outcome::Answer(error(request, ResponseCode::NotImp));
    }
    let [query] = request.queries.as_slice() else {
        return Outcome::Answer(error(request, ResponseCode::FormErr));
    };
    let key = key_of(&query.name.to_ascii());
    let qtype = query.query_type();
    let mut m = response_to(request);
    let zone = match table.lookup(&key) {
        Lookup::Outside => return Outcome::Forward,
        Lookup::NxDomain(zone) => {
            m.metadata.response_code = ResponseCode::NXDomain;
            m.metadata.authoritative = true;
            m.add_authority(zone.soa.clone());
            return Outcome::Answer(m);
        }
        Lookup::Found(node) => {
            match node {
                Node::Service(s) => service_answer(&mut m, &query.name, qtype, s, rng),
                Node::Instance { endpoint, a_ttl, aaaa_ttl, .. } => {
                    m.add_answers(address_records(&query.name, endpoint, qtype, *a_ttl, *aaaa_ttl));
                }
                Node::Apex(zone) if matches!(qtype, RecordType::SOA | RecordType::ANY) => {
                    m.add_answer(table.zones[*zone].soa.clone());
                }
                Node::LoadBalancer { nodes, .. } => {
                    m.add_answers(node_records(&query.name, nodes, qtype));
                }
                Node::Apex(_) | Node::Empty(_) => {}
            }
            match node {
                Node::Apex(z) | Node::Empty(z) | Node::LoadBalancer { zone: z, .. } => *z,
                Node::Service(s) => s.zone,
                Node::Instance { zone, .. } => *zone,
            }
        }
    };
    m.metadata.authoritative = true;
    if m.answers.is_empty() {
        // NODATA: the name exists, not this type; the SOA tells how long to cache that.
        m.add_authority(table.zones[zone].soa.clone());
    }
    Outcome::Answer(m)
}

/// The largest UDP answer the client takes: 512 bytes, or its EDNS0 size (capped at ours).
pub fn udp_limit(request: &Message) -> usize {
    match &request.edns {
        Some(edns) => edns.max_payload().clamp(512, EDNS_PAYLOAD) as usize,
        None => 512,
    }
}

/// `m` encoded for a transport that carries at most `limit` bytes: as is when it fits, else
/// with the additional section dropped, else empty with TC set.
pub fn encode(m: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = m.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut slim = m.clone();
    slim.additionals.clear();
    if let Ok(b) = slim.to_vec() {
        if b.len() <= limit {
            return Some(b);
        }
    }
    m.truncate().to_vec().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dns::table::Records;
    use flotilla_endpoints::cloudmap::{
        DnsConfig, DnsRecord, HealthStatus, Instance, Namespace, NamespaceType, RecordType as R, Service,
    };
    use flotilla_endpoints::{codec, keys};
    use hickory_proto::op::Query;

    fn records(policy: RoutingPolicy, healthy: usize, unhealthy: usize) -> Records {
        let mut r = Records::default();
        let ns = Namespace {
            id: "ns-1".into(),
            arn: "arn".into(),
            name: "Example.Local".into(),
            kind: NamespaceType::DnsPrivate,
            description: None,
            soa_ttl: Some(30),
            vpc: None,
            creator_request_id: None,
            tags: vec![],
            created_at_ms: 0,
        };
        r.apply(&keys::namespace("ns-1"), Some(&codec::encode(&ns)));
        let svc = Service {
            id: "srv-1".into(),
            arn: "arn".into(),
            name: "web".into(),
            namespace_id: "ns-1".into(),
            description: None,
            dns_config: Some(DnsConfig {
                routing_policy: policy,
                records: vec![DnsRecord { kind: R::A, ttl: 10 }, DnsRecord { kind: R::Srv, ttl: 20 }],
            }),
            custom_health: true,
            health_check_config: None,
            creator_request_id: None,
            tags: vec![],
            created_at_ms: 0,
        };
        r.apply(&keys::service("srv-1"), Some(&codec::encode(&svc)));
        for n in 0..healthy + unhealthy {
            let i = Instance {
                id: format!("i{n}"),
                service_id: "srv-1".into(),
                attributes: [
                    ("AWS_INSTANCE_IPV4".to_string(), format!("10.0.0.{n}")),
                    ("AWS_INSTANCE_PORT".into(), "80".into()),
                ]
                .into_iter()
                .collect(),
                health: if n < healthy { HealthStatus::Healthy } else { HealthStatus::Unhealthy },
                creator_request_id: None,
                task_arn: None,
                registered_at_ms: 0,
                updated_at_ms: 0,
            };
            r.apply(&keys::instance("srv-1", &i.id), Some(&codec::encode(&i)));
        }
        r
    }

    /// Asks `table` one question; the tests of the other answer sources use it too.
    pub(crate) fn ask(table: &Table, name: &str, t: RecordType) -> Message {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        match answer(table, &q, &mut rand::thread_rng()) {
            Outcome::Answer(m) => m,
            Outcome::Forward => panic!("{name} was forwarded"),
        }
    }

    fn addresses(m: &Message) -> Vec<String> {
        let mut v: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_answers_every_healthy_instance_up_to_eight_case_insensitively() {
        let table = Table::build(&records(RoutingPolicy::Multivalue, 3, 2), 1);
        let m = ask(&table, "WEB.example.LOCAL.", RecordType::A);
        assert_eq!(addresses(&m), vec!["10.0.0.0", "10.0.0.1", "10.0.0.2"]);
        assert!(m.answers.iter().all(|r| r.ttl == 10));
        assert!(m.metadata.authoritative);
        let table = Table::build(&records(RoutingPolicy::Multivalue, 12, 0), 1);
        let m = ask(&table, "web.example.local.", RecordType::A);
        assert_eq!(addresses(&m).len(), MAX_ANSWERS);
    }

    #[test]
    fn unhealthy_instances_answer_when_none_is_healthy_and_weighted_picks_one() {
        let table = Table::build(&records(RoutingPolicy::Multivalue, 0, 2), 1);
        assert_eq!(addresses(&ask(&table, "web.example.local.", RecordType::A)), vec!["10.0.0.0", "10.0.0.1"]);
        let table = Table::build(&records(RoutingPolicy::Weighted, 4, 0), 1);
        assert_eq!(addresses(&ask(&table, "web.example.local.", RecordType::A)).len(), 1);
    }

    #[test]
    fn srv_targets_instances_and_carries_their_addresses() {
        let table = Table::build(&records(RoutingPolicy::Multivalue, 2, 0), 1);
        let m = ask(&table, "web.example.local.", RecordType::SRV);
        let targets: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(format!("{} {} {} {}", s.priority, s.weight, s.port, s.target)),
                _ => None,
            })
            .collect();
        assert_eq!(targets.len(), 2);
        assert!(targets.contains(&"1 1 80 i0.web.example.local.".to_string()), "{targets:?}");
        assert_eq!(m.additionals.len(), 2);
        let m = ask(&table, "I1.web.example.local.", RecordType::A);
        assert_eq!(addresses(&m), vec!["10.0.0.1"]);
    }

    #[test]
    fn missing_names_get_nxdomain_and_missing_types_nodata_with_the_soa() {
        let table = Table::build(&records(RoutingPolicy::Multivalue, 1, 0), 1);
        let m = ask(&table, "nope.example.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].ttl, 30);
        let m = ask(&table, "web.example.local.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii("example.com.").unwrap(), RecordType::A));
        assert!(matches!(answer(&table, &q, &mut rand::thread_rng()), Outcome::Forward));
    }

    #[test]
    fn deleting_records_removes_their_names() {
        let mut r = records(RoutingPolicy::Multivalue, 2, 0);
        r.apply(&keys::instance("srv-1", "i0"), None);
        let table = Table::build(&r, 2);
        assert_eq!(addresses(&ask(&table, "web.example.local.", RecordType::A)), vec!["10.0.0.1"]);
        assert!(matches!(table.lookup("i0.web.example.local"), Lookup::NxDomain(_)));
        r.apply(&keys::namespace("ns-1"), None);
        assert!(matches!(Table::build(&r, 3).lookup("web.example.local"), Lookup::Outside));
    }

    #[test]
    fn large_udp_answers_are_truncated() {
        let table = Table::build(&records(RoutingPolicy::Multivalue, 8, 0), 1);
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii("web.example.local.").unwrap(), RecordType::SRV));
        let Outcome::Answer(m) = answer(&table, &q, &mut rand::thread_rng()) else { panic!() };
        let full = encode(&m, 65535).unwrap();
        let small = encode(&m, 200).unwrap();
        assert!(small.len() <= 200 && full.len() > 200);
        let parsed = Message::from_vec(&small).unwrap();
        assert!(parsed.metadata.truncation || parsed.additionals.is_empty());
    }
}
