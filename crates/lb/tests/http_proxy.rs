//! HTTP listeners end to end: real backends, a node fed by a fake control plane, requests
//! through it. Routing by path and host, fixed responses, redirects, forwarding headers,
//! streamed bodies, websocket-style upgrades and ALB's error statuses.

mod common;

use bytes::Bytes;
use common::*;
use flotilla_endpoints::elb::{Action, Condition, HealthState};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn routes_by_path_and_host_and_answers_fixed_responses_and_redirects() {
    let (api, web, admin) = (Backend::start("api").await, Backend::start("web").await, Backend::start("admin").await);
    let port = free_port();
    let fixed = Action::FixedResponse {
        status_code: "418".into(),
        content_type: Some("text/plain".into()),
        message_body: Some("teapot".into()),
    };
    let redirect = Action::Redirect {
        protocol: Some("HTTPS".into()),
        port: Some("443".into()),
        host: None,
        path: Some("/new/#{path}".into()),
        query: None,
        status_code: "HTTP_301".into(),
    };
    let cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![
            rule("l1", 10, vec![Condition::PathPattern { values: vec!["/api/*".into()] }], forward("api")),
            rule("l1", 5, vec![Condition::HostHeader { values: vec!["admin.*".into()] }], forward("admin")),
            rule("l1", 20, vec![Condition::PathPattern { values: vec!["/tea".into()] }], fixed),
            rule(
                "l1",
                30,
                vec![
                    Condition::PathPattern { values: vec!["/old/*".into()] },
                    Condition::HttpRequestMethod { values: vec!["GET".into()] },
                ],
                redirect,
            ),
        ],
        vec![target_group("api", "HTTP"), target_group("web", "HTTP"), target_group("admin", "HTTP")],
        vec![
            target("api", api.addr, Some(HealthState::Healthy)),
            target("web", web.addr, Some(HealthState::Healthy)),
            target("admin", admin.addr, Some(HealthState::Healthy)),
        ],
    );
    let node = Running::start(cfg).await;
    until_listening(port).await;

    let (status, _, body) = get(port, "/api/users", &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "api"));
    let (_, _, body) = get(port, "/API/users", &[]).await;
    assert_eq!(body, "web", "paths match case-sensitively; the default action serves the rest");
    let (_, _, body) = get(port, "/api/users", &[("host", "Admin.Example.com:8080")]).await;
    assert_eq!(body, "admin", "the host rule has the lower priority number, so it wins");

    let (status, headers, body) = get(port, "/tea", &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (418, "teapot"));
    assert_eq!(headers["content-type"], "text/plain");

    let (status, headers, _) = get(port, "/old/page?x=1", &[("host", "example.com")]).await;
    assert_eq!(status.as_u16(), 301);
    assert_eq!(headers["location"], "https://example.com/new/old/page?x=1");

    node.stop().await;
}

#[tokio::test]
async fn adds_forwarding_headers_and_strips_hop_by_hop_ones() {
    let web = Backend::start("web").await;
    let port = free_port();
    let cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        vec![target_group("web", "HTTP")],
        vec![target("web", web.addr, Some(HealthState::Healthy))],
    );
    let metrics_port = free_port();
    let node = Running::start_with(cfg, Some(format!("127.0.0.1:{metrics_port}").parse().unwrap())).await;
    until_listening(port).await;
    let (status, headers, body) = get(
        port,
        "/",
        &[
            ("host", "shop.example.com"),
            ("x-forwarded-for", "203.0.113.9"),
            ("keep-alive", "timeout=5"),
            ("connection", "keep-alive, x-custom"),
            ("x-custom", "per-hop"),
        ],
    )
    .await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "web"));
    assert_eq!(headers["x-seen-xff"], "203.0.113.9, 127.0.0.1", "the client's address is appended");
    assert_eq!(headers["x-seen-proto"], "http");
    assert_eq!(headers["x-seen-port"], port.to_string().as_str());
    assert_eq!(headers["x-seen-host"], "shop.example.com", "the Host header is kept");
    assert!(!headers.contains_key("x-seen-keep-alive"), "Keep-Alive is hop-by-hop");
    assert!(!headers.contains_key("x-seen-custom"), "headers named by Connection are hop-by-hop");
    let metrics = node.node.metrics_text();
    assert!(metrics.contains("flotilla_lb_requests_total{load_balancer=\"web\""), "{metrics}");
    assert!(metrics.contains("flotilla_lb_target_response_seconds_count{target_group=\"tg-web\"} 1"), "{metrics}");
    until_listening(metrics_port).await;
    let (status, headers, served) = get(metrics_port, "/metrics", &[]).await;
    assert_eq!(status.as_u16(), 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(served.contains("flotilla_lb_target_requests_total{target_group=\"tg-web\"} 1"), "{served}");
    node.stop().await;
}

#[tokio::test]
async fn streams_chunked_bodies_both_ways() {
    let web = Backend::start("web").await;
    let (mut chunks, body) = http_body_util::channel::Channel::<Bytes>::new(1);
    *web.stream.lock().unwrap() = Some(body);
    let port = free_port();
    let cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        vec![target_group("web", "HTTP")],
        vec![target("web", web.addr, Some(HealthState::Healthy))],
    );
    let node = Running::start(cfg).await;
    until_listening(port).await;

    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/stream").header("host", "x").body(http_body_util::Empty::<Bytes>::new()).unwrap();
    chunks.send_data(Bytes::from_static(b"first ")).await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let mut body = resp.into_body();
    // The first chunk arrives while the backend still holds the rest: nothing is buffered.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first ");
    chunks.send_data(Bytes::from_static(b"second")).await.unwrap();
    drop(chunks);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");

    // A chunked upload reaches the backend whole.
    let (mut up, upload) = http_body_util::channel::Channel::<Bytes>::new(4);
    let req = http::Request::post("/upload").header("host", "x").body(upload).unwrap();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let pending = tokio::spawn(async move { sender.send_request(req).await });
    for _ in 0..3 {
        up.send_data(Bytes::from(vec![b'x'; 1000])).await.unwrap();
    }
    drop(up);
    let resp = pending.await.unwrap().unwrap();
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&got[..], b"3000");
    node.stop().await;
}

#[tokio::test]
async fn tunnels_upgraded_connections() {
    let web = Backend::start("web").await;
    let port = free_port();
    let cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        vec![target_group("web", "HTTP")],
        vec![target("web", web.addr, Some(HealthState::Healthy))],
    );
    let node = Running::start(cfg).await;
    until_listening(port).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "connection closed in the head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    s.write_all(b"ping over the tunnel").await.unwrap();
    let mut buf = [0u8; 20];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping over the tunnel");
    drop(s);
    node.stop().await;
}

#[tokio::test]
async fn answers_502_503_and_504_as_alb_does() {
    let slow = Backend::start("slow").await;
    let dead = free_port();
    let port = free_port();
    let mut lb = load_balancer(flotilla_endpoints::elb::LoadBalancerType::Application);
    lb.attributes.insert("idle_timeout.timeout_seconds".into(), "1".into());
    let mut cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("empty"))],
        vec![
            rule("l1", 1, vec![Condition::PathPattern { values: vec!["/dead".into()] }], forward("dead")),
            rule("l1", 2, vec![Condition::PathPattern { values: vec!["/slow".into()] }], forward("slow")),
        ],
        vec![target_group("empty", "HTTP"), target_group("dead", "HTTP"), target_group("slow", "HTTP")],
        vec![
            target("dead", format!("127.0.0.1:{dead}").parse().unwrap(), Some(HealthState::Healthy)),
            target("slow", slow.addr, Some(HealthState::Healthy)),
        ],
    );
    cfg.load_balancers = vec![lb];
    let node = Running::start(cfg).await;
    until_listening(port).await;
    let (status, headers, body) = get(port, "/", &[]).await;
    assert_eq!(status.as_u16(), 503, "a group without targets");
    assert_eq!(headers["server"], "awselb/2.0");
    assert!(body.contains("503 Service Temporarily Unavailable") || body.contains("503 Service Unavailable"), "{body}");
    assert_eq!(get(port, "/dead", &[]).await.0.as_u16(), 502, "a target that refuses connections");
    assert_eq!(get(port, "/slow", &[]).await.0.as_u16(), 504, "a target silent past the idle timeout");
    slow.release.notify_waiters();
    let metrics = node.node.metrics_text();
    assert!(
        metrics.contains("flotilla_lb_http_5xx_total{load_balancer=\"web\",port=\"") && metrics.contains("} 3"),
        "{metrics}"
    );
    node.stop().await;
}

#[tokio::test]
async fn reuses_keep_alive_connections_to_targets() {
    let web = Backend::start("web").await;
    let port = free_port();
    let cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        vec![target_group("web", "HTTP")],
        vec![target("web", web.addr, Some(HealthState::Healthy))],
    );
    let node = Running::start(cfg).await;
    until_listening(port).await;
    // Ten clients one after the other, each on its own connection to the node.
    for _ in 0..10 {
        assert_eq!(get(port, "/", &[]).await.2, "web");
    }
    assert_eq!(web.hits(), 10);
    // Each worker thread keeps its own connections to the target.
    let opened = web.proxied_connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=WORKERS).contains(&opened), "{opened} connections for 10 requests");
    node.stop().await;
}

/// A target that answers the first request of each connection and closes the connection when a
/// second one arrives, as a target whose keep-alive timeout fires just then does.
async fn one_request_per_connection() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = dropped.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                let mut answered = false;
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        continue;
                    }
                    if answered {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh").await.unwrap();
                    answered = true;
                    seen.clear();
                }
            });
        }
    });
    (addr, dropped)
}

#[tokio::test]
async fn replays_an_idempotent_request_the_target_closed_under_it_but_not_a_post() {
    let (addr, dropped) = one_request_per_connection().await;
    let port = free_port();
    let cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        vec![target_group("web", "HTTP")],
        vec![target("web", addr, Some(HealthState::Healthy))],
    );
    let node = Running::start(cfg).await;
    until_listening(port).await;
    // One client connection: its requests run on one worker, which reuses its pooled connection.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        // Idle long enough that the node keeps a copy to send again (REPLAY_IDLE).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let req = http::Request::get("/").header("host", "x").body(http_body_util::Full::new(Bytes::new())).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"fresh");
    }
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst) >= 1, "no request met a closing connection");
    let req = http::Request::post("/").header("host", "x").body(http_body_util::Full::new(Bytes::from("x"))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 502, "a POST is never sent twice");
    node.stop().await;
}
