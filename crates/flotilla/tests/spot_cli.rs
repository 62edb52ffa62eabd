//! `flotilla spot interrupt` with the real binary against a control plane that mounts the Spot
//! endpoint: the notice lands on the host's record, and an unknown instance is refused with a
//! message naming it. Signed with the root key pair from the environment, like `flotilla token`.

use flotilla_api::{Clock, RootCredentials, ServerConfig};
use flotilla_autoscaling::groups::records;
use flotilla_autoscaling::spot;
use flotilla_hosts::keys;
use flotilla_store::{Op, Txn};
use serde_json::json;

const AKID: &str = "AKIDSPOTCLITEST";
const SECRET: &str = "spot-cli-test-secret-0123456789abcdef";

fn spot(endpoint: &str, id: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["spot", "interrupt", "--instance-id", id, "--warning-seconds", "30", "--server", endpoint])
        .env("FLOTILLA_ACCESS_KEY_ID", AKID)
        .env("FLOTILLA_SECRET_ACCESS_KEY", SECRET)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_interrupt_gives_a_host_its_notice() {
    let dir = tempfile::tempdir().unwrap();
    let creds = RootCredentials { access_key_id: AKID.into(), secret_access_key: SECRET.into() };
    let config = ServerConfig::new(dir.path().to_path_buf(), creds.clone());
    let ctx = flotilla_api::server::open(&config, Clock::system()).await.unwrap();
    let auth = flotilla_api::auth::Authenticator::new("us-east-1", creds, ctx.store.clone());
    let app = flotilla_api::server::router(ctx.clone(), &config)
        .merge(spot::router(ctx.clone(), Some(std::sync::Arc::new(auth))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(flotilla_api::tls::serve(
        flotilla_api::tls::Listening::Plain(listener),
        app,
        std::future::pending::<()>(),
    ));
    let host = json!({
        "instance_id": "i-0123456789abcdef0", "instance_type": "m5.large", "availability_zone": "us-east-1a",
        "subnet_id": "subnet-1", "private_ip": "172.31.0.4", "spot": true, "lifecycle": "InService",
        "health": "Healthy", "protected_from_scale_in": false, "launched_at_ms": 0, "launch_template": null,
        "cluster": "default"
    });
    let key = keys::host("i-0123456789abcdef0");
    ctx.commit(Txn::new().then(Op::put(&key, serde_json::to_vec(&host).unwrap()))).await.unwrap();

    let ep = endpoint.clone();
    let out = tokio::task::spawn_blocking(move || spot(&ep, "i-0123456789abcdef0")).await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("i-0123456789abcdef0") && said.contains("not drained"), "{said}");
    let h = records::host(&ctx, "i-0123456789abcdef0").await.unwrap().unwrap().value;
    let i = h.interruption.expect("the notice is recorded");
    assert_eq!((i.action.as_str(), i.deadline_ms - i.noticed_at_ms), ("terminate", 30_000));

    let out = tokio::task::spawn_blocking(move || spot(&endpoint, "i-fffffffffffffffff")).await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("i-fffffffffffffffff") && said.contains("InvalidParameterException"), "{said}");
}
