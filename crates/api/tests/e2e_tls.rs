//! TLS end to end: a server with `--tls auto`'s certificates (a CA made in the data directory),
//! the official aws-sdk-ecs trusting that CA, a client that does not trust it refused, and an
//! agent that joins with a token and holds its session over https:// and wss://.

mod common;

use std::time::Duration;

use common::{ACCOUNT, REGION};
use flotilla_agent::session::{enroll, run_session, ApiClient, RegistrationConfig, SessionConfig, SessionEvent};
use flotilla_api::{AuthMode, RootCredentials, ServerConfig};
use flotilla_sigv4::Credentials;

struct TlsServer {
    endpoint: String,
    ca: std::path::PathBuf,
    root: RootCredentials,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let root = RootCredentials {
        access_key_id: "AKIDFLOTILLATLS".into(),
        secret_access_key: "flotilla-tls-secret-key-0123456789abcdef".into(),
    };
    let config = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        region: REGION.into(),
        account_id: ACCOUNT.into(),
        auth: AuthMode::Verify,
        credentials: root.clone(),
        controller: Default::default(),
        stopped_task_retention: flotilla_api::reaper::DEFAULT_RETENTION,
        capacity: Default::default(),
        extensions: Default::default(),
        server_id: None,
        advertise_url: None,
        peer_tls: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let made = flotilla_api::tls::auto(dir.path(), addr).unwrap();
    let tls = flotilla_api::tls::server_config(&made.cert, &made.key).unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flotilla_api::serve(config, flotilla_api::tls::Listening::Tls(listener, tls), async move {
        let _ = rx.await;
    }));
    // "localhost" is one of the certificate's names, as 127.0.0.1 is.
    TlsServer { endpoint: format!("https://localhost:{}", addr.port()), ca: made.ca, root, _dir: dir, _stop: stop }
}

fn sdk(server: &TlsServer, trust: Option<&std::path::Path>) -> aws_sdk_ecs::Client {
    use aws_smithy_http_client::tls;
    let mut store = tls::TrustStore::empty();
    if let Some(ca) = trust {
        store = store.with_pem_certificate(std::fs::read(ca).unwrap());
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
        .tls_context(tls::TlsContext::builder().with_trust_store(store).build().unwrap())
        .build_https();
    let creds = aws_credential_types::Credentials::new(
        &server.root.access_key_id,
        &server.root.secret_access_key,
        None,
        None,
        "flotilla-test",
    );
    let conf = aws_sdk_ecs::Config::builder()
        .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
        .region(aws_sdk_ecs::config::Region::new(REGION))
        .endpoint_url(&server.endpoint)
        .credentials_provider(creds)
        .http_client(http)
        .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_ecs::Client::from_conf(conf)
}

async fn eventually_up(client: &aws_sdk_ecs::Client) {
    for _ in 0..200 {
        if client.list_clusters().send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the TLS server did not answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_and_an_agent_work_over_tls_trusting_the_generated_ca() {
    let server = start().await;
    let client = sdk(&server, Some(&server.ca));
    eventually_up(&client).await;
    client.create_cluster().cluster_name("secure").send().await.expect("CreateCluster over TLS");
    let out = client.describe_clusters().clusters("secure").send().await.unwrap();
    assert_eq!(out.clusters()[0].status(), Some("ACTIVE"));

    // A client that does not trust the CA gets no answer at all.
    let untrusting = sdk(&server, None);
    let err = untrusting.list_clusters().send().await.expect_err("an untrusted certificate");
    assert!(format!("{err:?}").to_lowercase().contains("certificate"), "{err:?}");

    // An agent joins with a token over https:// and opens its session over wss://.
    let root = Credentials::new(&server.root.access_key_id, &server.root.secret_access_key);
    let admin = ApiClient::with_ca(&server.endpoint, REGION, root.clone(), Some(&server.ca)).unwrap();
    let url = format!("{}/v1/tokens?cluster=secure", server.endpoint);
    let mut headers = http::HeaderMap::new();
    let params = flotilla_sigv4::SigningParams {
        credentials: &root,
        region: REGION,
        service: "ecs",
        time: std::time::SystemTime::now(),
    };
    flotilla_sigv4::sign(&http::Method::POST, &url.parse().unwrap(), &mut headers, b"", &params).unwrap();
    let tls = admin.tls().expect("an https endpoint has TLS settings");
    let http = reqwest::Client::builder().use_preconfigured_tls((*tls).clone()).build().unwrap();
    let minted: serde_json::Value = http.post(&url).headers(headers).send().await.unwrap().json().await.unwrap();
    let token = minted["token"].as_str().expect("a token").to_string();

    let dir = tempfile::tempdir().unwrap();
    let cfg = RegistrationConfig {
        cluster: "secure".into(),
        data_dir: dir.path().to_path_buf(),
        availability_zone: "us-east-1a".into(),
        instance_type: "flotilla.test".into(),
        attributes: Vec::new(),
        cpu: Some(1024),
        memory: Some(1024),
        memory_reserved_mib: 0,
        network_modes: vec!["bridge".into()],
        agent_version: "test".into(),
        docker_version: "test".into(),
        state_file: "agent.json".into(),
        ec2_instance_id: None,
        gpus: Vec::new(),
    };
    let bare = ApiClient::with_ca(&server.endpoint, REGION, Credentials::new("", ""), Some(&server.ca)).unwrap();
    let (agent, identity) = enroll(&bare, &cfg, Some(&token)).await.expect("join over TLS");
    let (ev_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (_reports_tx, reports) = tokio::sync::mpsc::unbounded_channel();
    let session = tokio::spawn(run_session(agent, identity.clone(), SessionConfig::default(), ev_tx, reports));
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await.expect("session ended") {
                SessionEvent::Connected => return,
                SessionEvent::Rejected(why) => panic!("refused: {why}"),
                _ => {}
            }
        }
    })
    .await
    .expect("the session connects over wss://");
    let out = client
        .describe_container_instances()
        .cluster("secure")
        .container_instances(&identity.container_instance_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(out.container_instances().len(), 1);
    session.abort();
}
