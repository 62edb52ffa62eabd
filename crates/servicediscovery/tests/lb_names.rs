//! The DNS server answers load balancers' DNS names against a real control plane: a load balancer
//! record and node records written to the store are answered over UDP (and TCP) with every
//! node's address, a node joining or leaving changes the answer, IPv6 nodes answer AAAA, and an
//! unknown name under `elb.localhost` is NXDOMAIN rather than forwarded.

mod common;

use std::time::Duration;

use common::{addresses, await_addresses, query, tcp, udp, Server};
use flotilla_api::AuthMode;
use flotilla_endpoints::elb::{LoadBalancer, LoadBalancerType};
use flotilla_endpoints::{codec, keys};
use flotilla_servicediscovery::dns::forward::Upstreams;
use flotilla_servicediscovery::dns::{self, Settings};
use flotilla_store::{Op, Txn, TxnOutcome};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::json;

const ID: &str = "0123456789abcdef";
const NAME: &str = "demo-0123456789abcdef.us-east-1.elb.localhost.";

async fn write(server: &Server, op: Op) {
    let outcome = server.ctx.store.txn(Txn::new().then(op)).await.expect("store");
    assert!(matches!(outcome, TxnOutcome::Committed { .. }), "{outcome:?}");
}

fn load_balancer() -> Vec<u8> {
    codec::encode(&LoadBalancer {
        id: ID.into(),
        arn: format!("arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/demo/{ID}"),
        name: "demo".into(),
        kind: LoadBalancerType::Application,
        dns_name: NAME.trim_end_matches('.').into(),
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

/// A node record as the ELBv2 extension writes it (`elbv2/node/<id>`).
fn node(id: &str, address: &str, last_seen_ms: i64) -> Op {
    let record = json!({"id": id, "advertise_address": address, "joined_at_ms": 1_000, "last_seen_ms": last_seen_ms});
    Op::put(format!("elbv2/node/{id}"), serde_json::to_vec(&record).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_names_answer_with_every_nodes_address() {
    let server = Server::start(AuthMode::Verify).await;
    let settings = Settings {
        udp_threads: 1,
        // No upstream: a name that were forwarded would come back SERVFAIL, not NXDOMAIN.
        upstreams: Some(Upstreams { servers: vec![], timeout: Duration::from_millis(200) }),
    };
    let dns = dns::start(&server.ctx, "127.0.0.1:0".parse().unwrap(), settings).await.expect("dns");
    let addr = dns.local_addr();

    write(&server, Op::put(keys::load_balancer(ID), load_balancer())).await;
    write(&server, node("lbn-01", "127.0.0.1", 1_000)).await;
    write(&server, node("lbn-02", "10.9.0.2", 1_000)).await;
    await_addresses(addr, NAME, &["10.9.0.2", "127.0.0.1"]).await;
    let a = udp(addr, &query("DEMO-0123456789ABCDEF.us-east-1.Elb.Localhost.", RecordType::A, false)).await;
    assert_eq!(addresses(&a), vec!["10.9.0.2", "127.0.0.1"], "names are case-insensitive");
    assert!(a.metadata.authoritative);
    assert!(a.answers.iter().all(|r| r.ttl == 60));
    assert_eq!(addresses(&tcp(addr, &query(NAME, RecordType::A, false)).await), vec!["10.9.0.2", "127.0.0.1"]);

    // A heartbeat (same address) keeps the answer; a third node joins it at once.
    write(&server, node("lbn-02", "10.9.0.2", 5_000)).await;
    write(&server, node("lbn-03", "10.9.0.3", 1_000)).await;
    await_addresses(addr, NAME, &["10.9.0.2", "10.9.0.3", "127.0.0.1"]).await;

    // An IPv6 node answers AAAA only.
    write(&server, node("lbn-04", "fd00::4", 1_000)).await;
    let mut six = Vec::new();
    for _ in 0..500 {
        six = udp(addr, &query(NAME, RecordType::AAAA, true))
            .await
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::AAAA(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        if !six.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(six, vec!["fd00::4"]);
    assert_eq!(addresses(&udp(addr, &query(NAME, RecordType::A, false)).await).len(), 3);

    // A node that leaves leaves the answer.
    write(&server, Op::delete("elbv2/node/lbn-01")).await;
    await_addresses(addr, NAME, &["10.9.0.2", "10.9.0.3"]).await;

    let unknown = udp(addr, &query("x.us-east-1.elb.localhost.", RecordType::A, false)).await;
    assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(unknown.authorities[0].record_type(), RecordType::SOA);

    // A deleted load balancer's name is NXDOMAIN too.
    write(&server, Op::delete(keys::load_balancer(ID))).await;
    let mut code = ResponseCode::NoError;
    for _ in 0..500 {
        code = udp(addr, &query(NAME, RecordType::A, false)).await.metadata.response_code;
        if code == ResponseCode::NXDomain {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(code, ResponseCode::NXDomain);

    dns.stop().await;
    server.stop().await;
}
