//! The DNS server against a real control plane: records created through the Cloud Map API are
//! answered over UDP and TCP (A, SRV with additional addresses, per-instance names, NXDOMAIN and
//! NODATA with the SOA), unhealthy instances drop out and come back as the fallback when none is
//! healthy, deregistration propagates, and names outside every namespace fail over to SERVFAIL
//! when no upstream answers.

mod common;

use std::time::Duration;

use common::{addresses, await_addresses, query, tcp, udp, Server};
use flotilla_api::AuthMode;
use flotilla_servicediscovery::dns::forward::Upstreams;
use flotilla_servicediscovery::dns::{self, Settings};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::json;

async fn setup(server: &Server) -> String {
    let op = server
        .call(
            "CreatePrivateDnsNamespace",
            json!({"Name": "Corp.Local", "Vpc": "vpc-1", "Properties": {"DnsProperties": {"SOA": {"TTL": 42}}}}),
        )
        .await;
    let got = server.call("GetOperation", json!({"OperationId": op["OperationId"]})).await;
    assert_eq!(got["Operation"]["Status"], "SUCCESS");
    let ns = got["Operation"]["Targets"]["NAMESPACE"].as_str().unwrap().to_string();
    let svc = server
        .call(
            "CreateService",
            json!({"Name": "api", "NamespaceId": ns, "HealthCheckCustomConfig": {},
                   "DnsConfig": {"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 5}, {"Type": "SRV", "TTL": 7}]}}),
        )
        .await;
    let id = svc["Service"]["Id"].as_str().unwrap().to_string();
    for n in 1..=3 {
        server
            .call(
                "RegisterInstance",
                json!({"ServiceId": id, "InstanceId": format!("task{n}"),
                       "Attributes": {"AWS_INSTANCE_IPV4": format!("10.1.0.{n}"), "AWS_INSTANCE_PORT": "8080"}}),
            )
            .await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_the_cloud_map_records() {
    let server = Server::start(AuthMode::Verify).await;
    let settings = Settings {
        udp_threads: 1,
        upstreams: Some(Upstreams { servers: vec![], timeout: Duration::from_millis(200) }),
    };
    let dns = dns::start(&server.ctx, "127.0.0.1:0".parse().unwrap(), settings).await.expect("dns");
    let addr = dns.local_addr();
    let svc = setup(&server).await;

    await_addresses(addr, "api.corp.local.", &["10.1.0.1", "10.1.0.2", "10.1.0.3"]).await;
    let a = udp(addr, &query("API.Corp.Local.", RecordType::A, false)).await;
    assert!(a.metadata.authoritative);
    assert!(a.answers.iter().all(|r| r.ttl == 5));

    let srv = udp(addr, &query("api.corp.local.", RecordType::SRV, true)).await;
    let mut targets: Vec<String> = srv
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(format!("{} {} {} {}", s.priority, s.weight, s.port, s.target)),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(targets[0], "1 1 8080 task1.api.corp.local.");
    assert_eq!(targets.len(), 3);
    assert_eq!(srv.additionals.len(), 3, "the SRV targets' A records ride along");
    assert!(srv.edns.is_some(), "an EDNS0 query gets an OPT back");
    assert_eq!(addresses(&udp(addr, &query("task2.api.corp.local.", RecordType::A, false)).await), vec!["10.1.0.2"]);

    let over_tcp = tcp(addr, &query("api.corp.local.", RecordType::SRV, false)).await;
    assert_eq!(over_tcp.answers.len(), 3);

    let missing = udp(addr, &query("nope.corp.local.", RecordType::A, false)).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(missing.authorities[0].ttl, 42, "the SOA carries the namespace's TTL");
    let nodata = udp(addr, &query("api.corp.local.", RecordType::AAAA, false)).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty() && nodata.authorities.len() == 1);

    // Unhealthy instances leave the answer; with none healthy, the unhealthy ones come back.
    server
        .call(
            "UpdateInstanceCustomHealthStatus",
            json!({"ServiceId": svc, "InstanceId": "task1", "Status": "UNHEALTHY"}),
        )
        .await;
    await_addresses(addr, "api.corp.local.", &["10.1.0.2", "10.1.0.3"]).await;
    for t in ["task2", "task3"] {
        server
            .call("UpdateInstanceCustomHealthStatus", json!({"ServiceId": svc, "InstanceId": t, "Status": "UNHEALTHY"}))
            .await;
    }
    await_addresses(addr, "api.corp.local.", &["10.1.0.1", "10.1.0.2", "10.1.0.3"]).await;
    server
        .call("UpdateInstanceCustomHealthStatus", json!({"ServiceId": svc, "InstanceId": "task3", "Status": "HEALTHY"}))
        .await;
    await_addresses(addr, "api.corp.local.", &["10.1.0.3"]).await;

    server.call("DeregisterInstance", json!({"ServiceId": svc, "InstanceId": "task3"})).await;
    await_addresses(addr, "api.corp.local.", &["10.1.0.1", "10.1.0.2"]).await;
    let gone = udp(addr, &query("task3.api.corp.local.", RecordType::A, false)).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);

    // Outside every namespace with no upstream: SERVFAIL, not silence.
    let outside = udp(addr, &query("example.com.", RecordType::A, false)).await;
    assert_eq!(outside.metadata.response_code, ResponseCode::ServFail);

    dns.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_namespaces_are_forwarded() {
    // A stand-in upstream resolver: answers every query with one fixed A record.
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = upstream.recv_from(&mut buf).await {
            let q = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
            let mut m = hickory_proto::op::Message::response(q.metadata.id, q.metadata.op_code);
            m.add_queries(q.queries.iter().cloned());
            let name = q.queries[0].name.clone();
            m.add_answer(hickory_proto::rr::Record::from_rdata(
                name,
                60,
                RData::A(hickory_proto::rr::rdata::A([192, 0, 2, 7].into())),
            ));
            let _ = upstream.send_to(&m.to_vec().unwrap(), peer).await;
        }
    });
    let server = Server::start(AuthMode::Verify).await;
    let settings = Settings {
        udp_threads: 2,
        upstreams: Some(Upstreams { servers: vec![upstream_addr], timeout: Duration::from_secs(2) }),
    };
    let dns = dns::start(&server.ctx, "127.0.0.1:0".parse().unwrap(), settings).await.expect("dns");
    let got = udp(dns.local_addr(), &query("www.example.org.", RecordType::A, false)).await;
    assert_eq!(addresses(&got), vec!["192.0.2.7"]);
    let got = tcp(dns.local_addr(), &query("www.example.org.", RecordType::A, false)).await;
    assert_eq!(addresses(&got), vec!["192.0.2.7"]);
    dns.stop().await;
    server.stop().await;
}
