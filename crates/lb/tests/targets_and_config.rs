//! Target choice, health checks, draining, TCP listeners and configuration swaps end to end.

mod common;

use std::time::Duration;

use common::*;
use flotilla_endpoints::elb::{HealthState, LoadBalancerType, Registration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_target_failing_health_checks_gets_no_traffic_and_is_reported() {
    let (good, bad) = (Backend::start("good").await, Backend::start("bad").await);
    bad.health.store(503, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    // Both start out healthy as far as the control plane knows.
    let cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        vec![target_group("web", "HTTP")],
        vec![target("web", good.addr, Some(HealthState::Healthy)), target("web", bad.addr, Some(HealthState::Healthy))],
    );
    let node = Running::start(cfg).await;
    until_listening(port).await;
    let report = node
        .until_report("the failing target unhealthy", |r| r.health.iter().any(|h| h.state == HealthState::Unhealthy))
        .await;
    let bad_obs = report.health.iter().find(|h| h.port == bad.addr.port()).unwrap();
    assert_eq!(bad_obs.state, HealthState::Unhealthy);
    assert_eq!(bad_obs.reason.as_deref(), Some("Target.ResponseCodeMismatch"));
    assert_eq!(bad_obs.description.as_deref(), Some("Health checks failed with these codes: [503]"));
    assert_eq!(bad_obs.target_group_id, "web");
    let good_obs = report.health.iter().find(|h| h.port == good.addr.port()).unwrap();
    assert_eq!(good_obs.state, HealthState::Healthy);

    let before = bad.hits();
    for _ in 0..10 {
        assert_eq!(get(port, "/", &[]).await.2, "good");
    }
    assert_eq!(bad.hits(), before, "the unhealthy target got a request");
    // The control plane heard of it too (debounced report on the change).
    for _ in 0..200 {
        if node
            .control
            .reports
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.health.iter().any(|h| h.state == HealthState::Unhealthy))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(node.control.reports.lock().unwrap().iter().any(|r| r.node_id == "node-1"
        && r.health.iter().any(|h| h.state == HealthState::Unhealthy && h.port == bad.addr.port())));
    node.stop().await;
}

#[tokio::test]
async fn new_targets_become_healthy_after_one_check_and_fail_open_when_none_is() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let port = free_port();
    let cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        vec![target_group("web", "HTTP")],
        vec![target("web", a.addr, None), target("web", b.addr, None)],
    );
    let node = Running::start(cfg).await;
    until_listening(port).await;
    node.until_report("both healthy after one check", |r| {
        r.health.len() == 2 && r.health.iter().all(|h| h.state == HealthState::Healthy)
    })
    .await;
    // Now both fail: no healthy target left, so ELB routes to all of them.
    a.health.store(500, std::sync::atomic::Ordering::SeqCst);
    b.health.store(500, std::sync::atomic::Ordering::SeqCst);
    node.until_report("both unhealthy", |r| r.health.iter().all(|h| h.state == HealthState::Unhealthy)).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let (status, _, body) = get(port, "/", &[]).await;
        assert_eq!(status.as_u16(), 200);
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "fail-open spreads over every registered target: {seen:?}");
    node.stop().await;
}

#[tokio::test]
async fn a_draining_target_finishes_its_request_and_gets_no_new_ones() {
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    let port = free_port();
    let groups = vec![target_group("web", "HTTP")];
    let cfg = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        groups.clone(),
        vec![target("web", old.addr, Some(HealthState::Healthy))],
    );
    let node = Running::start(cfg).await;
    until_listening(port).await;
    let in_flight = tokio::spawn(get(port, "/slow", &[]));
    for _ in 0..200 {
        if old.hits() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(old.hits(), 1, "the slow request reached the old target");

    let mut draining = target("web", old.addr, Some(HealthState::Healthy));
    draining.target.registration = Registration::Draining { since_ms: 1, until_ms: 300_001 };
    node.apply(config(
        2,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        groups,
        vec![draining, target("web", new.addr, Some(HealthState::Healthy))],
    ))
    .await;
    let report = node.node.report();
    assert_eq!(report.draining_connections, vec![("web".to_string(), old.addr.ip().to_string(), old.addr.port(), 1)]);
    for _ in 0..4 {
        assert_eq!(get(port, "/", &[]).await.2, "new");
    }
    assert_eq!(old.hits(), 1, "the draining target got a new request");
    old.release.notify_waiters();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "old slow done"));
    node.until_report("no connection left to the draining target", |r| r.draining_connections.iter().all(|d| d.3 == 0))
        .await;
    node.stop().await;
}

#[tokio::test]
async fn tcp_listeners_splice_with_half_close() {
    // An echo server that answers after the client has finished writing.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = echo.accept().await else { continue };
            tokio::spawn(async move {
                let mut all = Vec::new();
                s.read_to_end(&mut all).await.unwrap();
                all.reverse();
                s.write_all(&all).await.unwrap();
            });
        }
    });
    let port = free_port();
    let mut cfg = config(
        1,
        vec![listener("l1", port, "TCP", forward("tcp"))],
        vec![],
        vec![target_group("tcp", "TCP")],
        vec![target("tcp", echo_addr, None)],
    );
    cfg.load_balancers = vec![load_balancer(LoadBalancerType::Network)];
    let node = Running::start(cfg).await;
    until_listening(port).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"olleh");
    node.until_report("the TCP target healthy by connect", |r| {
        r.health.iter().any(|h| h.state == HealthState::Healthy)
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn a_configuration_swap_opens_and_closes_listeners() {
    let web = Backend::start("web").await;
    let (p1, p2) = (free_port(), free_port());
    let groups = vec![target_group("web", "HTTP")];
    let targets = vec![target("web", web.addr, Some(HealthState::Healthy))];
    let node = Running::start(config(
        1,
        vec![listener("l1", p1, "HTTP", forward("web"))],
        vec![],
        groups.clone(),
        targets.clone(),
    ))
    .await;
    until_listening(p1).await;
    assert_eq!(get(p1, "/", &[]).await.2, "web");

    node.apply(config(
        2,
        vec![listener("l1", p1, "HTTP", forward("web")), listener("l2", p2, "HTTP", forward("web"))],
        vec![],
        groups.clone(),
        targets.clone(),
    ))
    .await;
    until_listening(p2).await;
    assert_eq!(get(p2, "/", &[]).await.2, "web");

    node.apply(config(3, vec![listener("l2", p2, "HTTP", forward("web"))], vec![], groups, targets)).await;
    until_closed(p1).await;
    assert_eq!(get(p2, "/", &[]).await.2, "web");
    assert_eq!(node.node.revision(), 3);
    node.stop().await;
}

#[tokio::test]
async fn a_port_taken_by_another_process_is_retried_not_fatal() {
    let web = Backend::start("web").await;
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap().port();
    let free = free_port();
    let node = Running::start(config(
        1,
        vec![listener("l1", taken, "HTTP", forward("web")), listener("l2", free, "HTTP", forward("web"))],
        vec![],
        vec![target_group("web", "HTTP")],
        vec![target("web", web.addr, Some(HealthState::Healthy))],
    ))
    .await;
    until_listening(free).await;
    assert_eq!(get(free, "/", &[]).await.2, "web", "the other listener serves");
    drop(blocker);
    until_listening(taken).await;
    assert_eq!(get(taken, "/", &[]).await.2, "web", "the port opens once it is free");
    node.stop().await;
}
