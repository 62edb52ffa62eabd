//! The HTTP control plane client against a stand-in server speaking the contract: the join
//! answer is kept (mode 0600) and reused, config polls and reports are SigV4-signed as `ecs`
//! with the node's key pair, and a 304 is "nothing new".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use flotilla_endpoints::elb::{NodeConfig, NodeReport};
use flotilla_lb::{ControlPlane, Endpoints, HttpControlPlane};
use flotilla_sigv4::{Credentials, Verifier};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Server {
    joins: AtomicUsize,
    join_bodies: Mutex<Vec<serde_json::Value>>,
    reports: Mutex<Vec<NodeReport>>,
    signed_by: Mutex<Vec<String>>,
}

impl Server {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let reply = |status: StatusCode, body: Vec<u8>| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r
        };
        if parts.uri.path() == "/v1/lb/join" {
            self.joins.fetch_add(1, Ordering::SeqCst);
            self.join_bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
            let creds = serde_json::json!({"nodeId": "lbn-1", "accessKeyId": "AKIDNODE", "secretAccessKey": "s3cret"});
            return reply(StatusCode::OK, serde_json::to_vec(&creds).unwrap());
        }
        let verifier = Verifier::new("ecs").with_regions(["us-east-1"]);
        let secrets = Credentials::new("AKIDNODE", "s3cret");
        match verifier.verify_parts(&parts, &body, SystemTime::now(), &secrets) {
            Ok(p) => self.signed_by.lock().unwrap().push(p.access_key_id),
            Err(e) => return reply(StatusCode::FORBIDDEN, e.to_string().into_bytes()),
        }
        match (parts.uri.path(), parts.uri.query()) {
            ("/v1/lb/config", Some("after=0&wait=20")) => {
                let config = NodeConfig {
                    revision: 5,
                    load_balancers: vec![],
                    listeners: vec![],
                    rules: vec![],
                    target_groups: vec![],
                    targets: vec![],
                };
                reply(StatusCode::OK, serde_json::to_vec(&config).unwrap())
            }
            ("/v1/lb/config", Some("after=5&wait=20")) => reply(StatusCode::NOT_MODIFIED, vec![]),
            ("/v1/lb/report", None) => {
                self.reports.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                reply(StatusCode::NO_CONTENT, vec![])
            }
            _ => reply(StatusCode::NOT_FOUND, vec![]),
        }
    }
}

fn servers(list: &str) -> Endpoints {
    Endpoints::parse(list).unwrap()
}

async fn serve() -> (Arc<Server>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = Arc::new(Server::default());
    let s = server.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let s = s.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let s = s.clone();
                    async move { Ok::<_, std::convert::Infallible>(s.answer(req).await) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (server, url)
}

#[tokio::test]
async fn joins_once_then_polls_and_reports_signed() {
    let (server, url) = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let plane =
        HttpControlPlane::enroll(&servers(&url), "us-east-1", dir.path(), Some("tok-123"), "10.0.0.5").await.unwrap();
    assert_eq!(plane.node_id(), "lbn-1");
    let join = server.join_bodies.lock().unwrap()[0].clone();
    assert_eq!(join["token"], "tok-123");
    assert_eq!(join["advertiseAddress"], "10.0.0.5");
    assert!(join.get("nodeId").is_none(), "a first join has no previous id");
    let saved = flotilla_lb::control::load_credentials(dir.path()).unwrap();
    assert_eq!((saved.node_id.as_str(), saved.access_key_id.as_str()), ("lbn-1", "AKIDNODE"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("lb-credentials.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let config = plane.fetch(0).await.unwrap().expect("a configuration");
    assert_eq!(config.revision, 5);
    assert!(plane.fetch(5).await.unwrap().is_none(), "304: nothing newer");
    plane
        .report(NodeReport {
            node_id: "lbn-1".into(),
            health: vec![],
            draining_connections: vec![("tg".into(), "10.0.0.9".into(), 80, 0)],
        })
        .await
        .unwrap();
    assert_eq!(server.reports.lock().unwrap()[0].draining_connections.len(), 1);
    assert_eq!(*server.signed_by.lock().unwrap(), vec!["AKIDNODE"; 3]);

    // A restart needs no token: the saved pair is used, no second join.
    let again = HttpControlPlane::enroll(&servers(&url), "us-east-1", dir.path(), None, "10.0.0.5").await.unwrap();
    assert_eq!(again.node_id(), "lbn-1");
    assert!(again.fetch(0).await.unwrap().is_some());
    assert_eq!(server.joins.load(Ordering::SeqCst), 1);

    // Without its key pair the node joins again, under its previous id.
    std::fs::remove_file(dir.path().join("lb-credentials.json")).unwrap();
    HttpControlPlane::enroll(&servers(&url), "us-east-1", dir.path(), Some("tok-456"), "10.0.0.5").await.unwrap();
    let rejoin = server.join_bodies.lock().unwrap()[1].clone();
    assert_eq!(rejoin["nodeId"], "lbn-1");
    assert_eq!(rejoin["token"], "tok-456");
}

#[tokio::test]
async fn no_token_and_no_saved_pair_is_an_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let err = HttpControlPlane::enroll(&servers("http://127.0.0.1:9"), "us-east-1", dir.path(), None, "10.0.0.5")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("--token"), "{err}");
}
