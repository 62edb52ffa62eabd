//! A node given two servers (`--server A,B`) outlives the one it is on: it joins and polls
//! through A, A dies mid long-poll (its tasks dropped, connections closed), and the node moves
//! to B at once: it gets the next configuration from B and reports there, and it serves client
//! traffic with its last configuration all along.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use flotilla_endpoints::elb::{Action, Condition, HealthState, NodeConfig};
use flotilla_lb::{ControlPlane, Endpoints, HttpControlPlane, Node, NodeSettings};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// A stand-in server of a control plane whose configuration is shared with its peers (as
/// servers on one store share it): it answers joins, long polls and reports, and counts them.
struct StandIn {
    url: String,
    config: watch::Receiver<NodeConfig>,
    joins: AtomicUsize,
    polls: AtomicUsize,
    /// The configuration revisions this server answered with.
    served: Mutex<Vec<i64>>,
    reports: AtomicUsize,
    /// The accept loop; aborting it drops every connection it serves.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl StandIn {
    async fn start(config: watch::Receiver<NodeConfig>) -> Arc<StandIn> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Arc::new(StandIn {
            url: format!("http://{}", listener.local_addr().unwrap()),
            config,
            joins: AtomicUsize::new(0),
            polls: AtomicUsize::new(0),
            served: Mutex::new(Vec::new()),
            reports: AtomicUsize::new(0),
            task: Mutex::new(None),
        });
        let s = server.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let s = s.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(s.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *server.task.lock().unwrap() = Some(task);
        server
    }

    /// Takes the server away: no more connections, and those open are dropped mid-request.
    /// Waits until the accept loop is gone (and with it the set of connection tasks, each then
    /// cancelled), so that no held long poll of this server answers a change made afterwards.
    async fn kill(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, body: Vec<u8>| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r
        };
        let (path, query) = (req.uri().path().to_string(), req.uri().query().unwrap_or("").to_string());
        let _ = req.into_body().collect().await;
        match path.as_str() {
            "/v1/lb/join" => {
                self.joins.fetch_add(1, Ordering::SeqCst);
                let creds =
                    serde_json::json!({"nodeId": "lbn-1", "accessKeyId": "AKIDNODE", "secretAccessKey": "s3cret"});
                reply(StatusCode::OK, serde_json::to_vec(&creds).unwrap())
            }
            "/v1/lb/config" => {
                self.polls.fetch_add(1, Ordering::SeqCst);
                let after: i64 =
                    query.split('&').find_map(|kv| kv.strip_prefix("after=")).and_then(|v| v.parse().ok()).unwrap_or(0);
                // A long poll: held until a newer configuration, or answered 304 after a while.
                let mut rx = self.config.clone();
                let newer = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|c| c.revision > after)).await;
                match newer {
                    Ok(Ok(c)) => {
                        self.served.lock().unwrap().push(c.revision);
                        reply(StatusCode::OK, serde_json::to_vec(&*c).unwrap())
                    }
                    _ => reply(StatusCode::NOT_MODIFIED, vec![]),
                }
            }
            "/v1/lb/report" => {
                self.reports.fetch_add(1, Ordering::SeqCst);
                reply(StatusCode::NO_CONTENT, vec![])
            }
            _ => reply(StatusCode::NOT_FOUND, vec![]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_moves_to_the_next_server_and_serves_throughout() {
    let backend = Backend::start("web").await;
    let port = free_port();
    let first = config(
        1,
        vec![listener("l1", port, "HTTP", forward("web"))],
        vec![],
        vec![target_group("web", "HTTP")],
        vec![target("web", backend.addr, Some(HealthState::Healthy))],
    );
    let (config_tx, config_rx) = watch::channel(first.clone());
    let (a, b) = (StandIn::start(config_rx.clone()).await, StandIn::start(config_rx).await);

    let dir = tempfile::tempdir().unwrap();
    let servers = Endpoints::parse(&format!("{},{}", a.url, b.url)).unwrap().starting_at(0);
    let plane = HttpControlPlane::enroll(&servers, "us-east-1", dir.path(), Some("tok"), "127.0.0.1").await.unwrap();
    assert_eq!((a.joins.load(Ordering::SeqCst), b.joins.load(Ordering::SeqCst)), (1, 0), "joined through A");
    let plane: Arc<dyn ControlPlane> = Arc::new(plane);

    let node = Node::new("lbn-1");
    let mut settings = NodeSettings::new("lbn-1");
    settings.bind = "127.0.0.1".parse().unwrap();
    settings.workers = WORKERS;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(flotilla_lb::run_node(node.clone(), settings, plane, async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(30), node.wait_for_revision(1)).await.expect("configuration 1 served");
    until_listening(port).await;

    // Client traffic all along: every request must be answered by the backend.
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let (traffic_stop, mut traffic_stopped) = watch::channel(false);
    let traffic = {
        let (sent, failed) = (sent.clone(), failed.clone());
        tokio::spawn(async move {
            while !*traffic_stopped.borrow_and_update() {
                let (status, _, body) = get(port, "/", &[]).await;
                sent.fetch_add(1, Ordering::SeqCst);
                if (status.as_u16(), body.as_str()) != (200, "web") {
                    failed.lock().unwrap().push(format!("{status} {body}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // The node is polling A (its long poll is held there) when A dies.
    let polls_before = a.polls.load(Ordering::SeqCst);
    assert!(polls_before >= 1);
    a.kill().await;

    // A change made while A is gone reaches the node through B.
    let fixed = Action::FixedResponse {
        status_code: "200".into(),
        content_type: Some("text/plain".into()),
        message_body: Some("moved".into()),
    };
    let mut second = first.clone();
    second.revision = 2;
    second.rules = vec![rule("l1", 10, vec![Condition::PathPattern { values: vec!["/moved".into()] }], fixed)];
    config_tx.send_replace(second);
    tokio::time::timeout(Duration::from_secs(30), node.wait_for_revision(2))
        .await
        .expect("the node got configuration 2 from the other server");
    assert!(b.served.lock().unwrap().contains(&2), "B served configuration 2");
    assert!(!a.served.lock().unwrap().contains(&2), "A, dead, served nothing after it died");
    let (status, _, body) = get(port, "/moved", &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "moved"));
    // Reports go to B now (the node reports after each configuration change).
    for _ in 0..400 {
        if b.reports.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(b.reports.load(Ordering::SeqCst) > 0, "the node reported to B");

    let _ = traffic_stop.send(true);
    traffic.await.unwrap();
    assert!(sent.load(Ordering::SeqCst) >= 2, "traffic flowed while the node moved");
    assert!(failed.lock().unwrap().is_empty(), "requests failed while the node moved: {:?}", failed.lock().unwrap());
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn when_every_server_is_down_the_failure_is_one_to_wait_out() {
    let dead = || format!("http://127.0.0.1:{}", free_port());
    let servers = Endpoints::parse(&format!("{},{}", dead(), dead())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err =
        HttpControlPlane::enroll(&servers, "us-east-1", dir.path(), Some("tok"), "127.0.0.1").await.err().unwrap();
    let unreachable = err.downcast_ref::<flotilla_lb::Unreachable>().expect("an Unreachable failure");
    assert_eq!(unreachable.servers, servers.to_string());
}
