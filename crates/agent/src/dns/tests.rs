//! The forwarder against fake upstream servers on 127.0.0.1: queries relayed with their answers
//! returned under the client's own ID (also when two clients use the same one), SERVFAIL when the
//! upstream stays silent, and TCP relayed byte for byte.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::packet::{self, tests::query};
use super::*;

/// Far longer than anything here should take; a hang still fails.
const WAIT: Duration = Duration::from_secs(10);

/// An upstream that answers each query with the query itself, flagged as an answer, followed by
/// the query's name length as a marker, so the test can tell which query an answer belongs to.
async fn echoing_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            let mut answer = buf[..n].to_vec();
            answer[2] |= 0x80;
            answer.push(n as u8);
            sock.send_to(&answer, from).await.unwrap();
        }
    });
    (addr, task)
}

async fn ask(client: &UdpSocket, to: SocketAddr, q: &[u8]) -> Vec<u8> {
    client.send_to(q, to).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(WAIT, client.recv_from(&mut buf)).await.expect("an answer").unwrap();
    assert_eq!(from, to, "the answer comes from the address asked");
    buf[..n].to_vec()
}

#[tokio::test]
async fn a_query_is_relayed_and_its_answer_returned_under_the_clients_id() {
    let (upstream, _up) = echoing_upstream().await;
    let fwd = Forwarder::bind(upstream, &["127.0.0.1:0".parse().unwrap()], WAIT).await;
    let at = fwd.local_addrs()[0];
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for round in 0..3 {
        // Two clients, the same ID, different names: each gets the answer to its own query.
        let (qa, qb) = (query(0x1234, "web.ns.test"), query(0x1234, "db.a-longer-namespace.test"));
        let (ra, rb) = tokio::join!(ask(&a, at, &qa), ask(&b, at, &qb));
        for (q, r) in [(&qa, &ra), (&qb, &rb)] {
            assert_eq!(packet::id(r), Some(0x1234), "round {round}");
            assert!(!packet::is_query(r));
            assert_eq!(r[2], q[2] | 0x80);
            assert_eq!(&r[3..r.len() - 1], &q[3..], "the upstream's answer, byte for byte");
            assert_eq!(usize::from(*r.last().unwrap()), q.len());
        }
    }
}

#[tokio::test]
async fn an_upstream_that_stays_silent_gives_servfail() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let fwd =
        Forwarder::bind(silent.local_addr().unwrap(), &["127.0.0.1:0".parse().unwrap()], Duration::from_millis(100))
            .await;
    let at = fwd.local_addrs()[0];
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query(0xabcd, "web.ns.test");
    let r = ask(&client, at, &q).await;
    assert_eq!(packet::id(&r), Some(0xabcd));
    assert_eq!(r[3] & 0x0f, packet::SERVFAIL);
    assert_eq!(&r[packet::HEADER_LEN..], &q[packet::HEADER_LEN..], "the question is echoed");
    // The upstream did get the query, under the forwarder's own ID.
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(WAIT, silent.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[2..n], &q[2..]);
    // An upstream that is not there at all (nothing on the port) fails the same way.
    let gone = {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.local_addr().unwrap()
    };
    let fwd = Forwarder::bind(gone, &["127.0.0.1:0".parse().unwrap()], Duration::from_millis(100)).await;
    let r = ask(&client, fwd.local_addrs()[0], &q).await;
    assert_eq!((packet::id(&r), r[3] & 0x0f), (Some(0xabcd), packet::SERVFAIL));
}

#[tokio::test]
async fn answers_garbage_and_oversized_queries_sent_to_the_forwarder_are_dropped() {
    let (upstream, _up) = echoing_upstream().await;
    let fwd = Forwarder::bind(upstream, &["127.0.0.1:0".parse().unwrap()], WAIT).await;
    let at = fwd.local_addrs()[0];
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut answer = query(1, "x.test");
    answer[2] |= 0x80;
    client.send_to(&answer, at).await.unwrap();
    client.send_to(&[1, 2, 3], at).await.unwrap();
    let mut huge = query(3, "z.test");
    huge.resize(5000, 0);
    client.send_to(&huge, at).await.unwrap();
    // The next real query's answer is the first thing back.
    let r = ask(&client, at, &query(2, "y.test")).await;
    assert_eq!(packet::id(&r), Some(2));
}

#[tokio::test]
async fn tcp_is_relayed_both_ways() {
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = up.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = up.accept().await.unwrap();
        // Two framed queries on one connection, each answered with its ID and a marker.
        for marker in [b'a', b'b'] {
            let len = s.read_u16().await.unwrap();
            let mut msg = vec![0; usize::from(len)];
            s.read_exact(&mut msg).await.unwrap();
            let answer = [&msg[..2], &[0x81, 0x80, marker][..]].concat();
            s.write_u16(answer.len() as u16).await.unwrap();
            s.write_all(&answer).await.unwrap();
        }
    });
    let fwd = Forwarder::bind(upstream, &["127.0.0.1:0".parse().unwrap()], WAIT).await;
    let mut c = TcpStream::connect(fwd.local_addrs()[0]).await.unwrap();
    for (id, marker) in [(7u16, b'a'), (8, b'b')] {
        let q = query(id, "big.ns.test");
        c.write_u16(q.len() as u16).await.unwrap();
        c.write_all(&q).await.unwrap();
        let len = tokio::time::timeout(WAIT, c.read_u16()).await.unwrap().unwrap();
        let mut r = vec![0; usize::from(len)];
        c.read_exact(&mut r).await.unwrap();
        assert_eq!((&r[..2], r[4]), (&id.to_be_bytes()[..], marker));
    }
}

#[tokio::test]
async fn resolvers_name_only_addresses_served() {
    // 192.0.2.1 (TEST-NET) is no address of this machine: it cannot be bound, so bridge and
    // awsvpc containers keep Docker's resolver; host mode's loopback address is served.
    let (upstream, _up) = echoing_upstream().await;
    let gateway: IpAddr = "192.0.2.1".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (fwd, resolvers) = start_on(upstream, Some(gateway), dir.path(), 0).await;
    assert_eq!(resolvers.bridge, None);
    assert_eq!(resolvers.resolv_conf, None, "no resolv.conf naming an address not served");
    assert_eq!(resolvers.host, Some(IpAddr::V4(HOST_MODE_ADDRESS)));
    assert_eq!(fwd.local_addrs().len(), 1);
    // What the host-mode address is given answers.
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let r = ask(&client, fwd.local_addrs()[0], &query(3, "h.test")).await;
    assert_eq!(packet::id(&r), Some(3));
    assert_eq!(resolvers.for_mode(NetworkMode::Host), resolvers.host);
    assert_eq!(resolvers.for_mode(NetworkMode::None), None);
    // Served on the loopback address as if it were the gateway: the awsvpc resolv.conf names it.
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let (_fwd, resolvers) = start_on(upstream, Some(loopback), dir.path(), 0).await;
    assert_eq!(resolvers.bridge, Some(loopback));
    let file = resolvers.resolv_conf.expect("a resolv.conf");
    assert!(std::fs::read_to_string(file).unwrap().contains("nameserver 127.0.0.1\n"));
    let both = TaskResolvers { bridge: Some(gateway), ..TaskResolvers::default() };
    assert_eq!(both.for_mode(NetworkMode::Awsvpc), Some(gateway));
    assert_eq!(both.for_mode(NetworkMode::Bridge), Some(gateway));
}

#[tokio::test]
async fn two_agents_share_one_listening_address() {
    let (upstream, _up) = echoing_upstream().await;
    let first = Forwarder::bind(upstream, &["127.0.0.1:0".parse().unwrap()], WAIT).await;
    let at = first.local_addrs()[0];
    let second = Forwarder::bind(upstream, &[at], WAIT).await;
    assert_eq!(second.local_addrs(), &[at]);
    // With the first gone, the second still answers there.
    first.stop().await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for id in 0..4 {
        let r = ask(&client, at, &query(id, "w.test")).await;
        assert_eq!(packet::id(&r), Some(id));
    }
    // A port held by a socket without SO_REUSEPORT is refused, and left out.
    let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken = plain.local_addr().unwrap();
    let third = Forwarder::bind(upstream, &[taken], WAIT).await;
    assert!(third.local_addrs().is_empty());
}
