//! The `local` provisioner with a real `flotilla agent` process: a group of one host launches
//! an agent that joins with a token the control plane minted, registers as the host's EC2
//! instance with the instance type's resources, is adopted by a fresh provisioner (as after a
//! server restart), and goes away (SIGTERM, container instance deregistered) when the group is
//! scaled in. The agent runs on the local Docker Engine, so this test needs it: without Docker
//! the launch fails and so does the test.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use flotilla_api::{Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_autoscaling::groups::{self, records, Settings};
use flotilla_autoscaling::provision::local::Local;
use flotilla_autoscaling::provision::{ControlPlane, Provisioner};
use flotilla_hosts::{keys, Host, Lifecycle};
use flotilla_store::{Op, Txn};
use serde_json::json;

const REGION: &str = "us-east-1";

async fn put(ctx: &Ctx, key: &str, v: &serde_json::Value) {
    ctx.commit(Txn::new().then(Op::put(key, serde_json::to_vec(v).unwrap()))).await.unwrap();
}

fn group(desired: u32) -> serde_json::Value {
    json!({
        "name": "local-asg", "arn": "arn:local-asg", "created_at_ms": 0,
        "launch_template": {"id": "lt-0123456789abcdef0", "name": "local"},
        "min_size": 0, "max_size": 2, "desired_capacity": desired,
        "availability_zones": ["us-east-1b"]
    })
}

async fn hosts(ctx: &Ctx) -> Vec<Host> {
    records::load(ctx).await.unwrap().hosts.into_iter().map(|h| h.value).collect()
}

/// Kills, when the test ends however it ends, every agent process whose command line names the
/// test's data directory: a failed assertion must not leave agents running.
struct Reap(String);

impl Drop for Reap {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&self.0) {
                let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
        }
    }
}

fn pid_alive(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_host_is_a_real_agent_process_that_joins_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().join("hosts").display().to_string());
    let creds = RootCredentials {
        access_key_id: "AKIDLOCALPROV".into(),
        secret_access_key: "local-provisioner-test-secret-0123456789".into(),
    };
    let config = ServerConfig::new(dir.path().to_path_buf(), creds.clone());
    let ctx = flotilla_api::server::open(&config, Clock::system()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (c, conf) = (ctx.clone(), config.clone());
    let served = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        flotilla_api::server::serve_ctx(c, &conf, flotilla_api::tls::Listening::Plain(listener), stop).await
    });
    let cp = ControlPlane {
        endpoint,
        region: REGION.into(),
        access_key_id: creds.access_key_id.clone(),
        secret_access_key: creds.secret_access_key.clone(),
        ca_cert: None,
        data_dir: dir.path().to_path_buf(),
    };
    let program = std::path::PathBuf::from(env!("CARGO_BIN_EXE_flotilla"));
    let settings = Settings {
        interval: Duration::from_millis(200),
        quiet: Duration::from_millis(50),
        ..Settings::with_root_secret(&creds.secret_access_key)
    };
    let group_loop = groups::spawn(&ctx, Arc::new(Local::with_program(program.clone(), cp.clone())), settings);

    let ud = base64::engine::general_purpose::STANDARD.encode("ECS_CONTAINER_STOP_TIMEOUT=5s\n");
    let template = json!({
        "id": "lt-0123456789abcdef0", "name": "local", "created_at_ms": 0, "default_version": 1,
        "versions": [{"number": 1, "created_at_ms": 0, "instance_type": "t3.small", "user_data": ud}]
    });
    put(&ctx, &keys::launch_template("lt-0123456789abcdef0"), &template).await;
    put(&ctx, &keys::group("local-asg"), &group(1)).await;

    // The agent joins as the host's instance, with a t3.small's resources.
    let mut registered = None;
    for _ in 0..300 {
        let hs = hosts(&ctx).await;
        if let Some(h) = hs.iter().find(|h| h.lifecycle == Lifecycle::InService) {
            let ix = ctx.cache.read();
            let ci =
                ix.instances.values().find(|e| e.value.instance.ec2_instance_id.as_deref() == Some(&h.instance_id));
            if let Some(ci) = ci {
                registered = Some((h.clone(), ci.value.instance.clone()));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some((host, ci)) = registered else {
        let acts = ctx.store.list(&keys::activities_of("local-asg")).await.unwrap();
        let said: Vec<String> = acts.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()).collect();
        panic!("no local host registered (is Docker running?); activities: {said:#?}");
    };
    assert_eq!(ci.status.as_deref(), Some("ACTIVE"));
    let res = ci.registered_resources.unwrap();
    let int = |n: &str| res.iter().find(|r| r.name.as_deref() == Some(n)).and_then(|r| r.integer_value);
    assert_eq!((int("CPU"), int("MEMORY")), (Some(2048), Some(1920)));
    let pid = host.provisioner_handle.clone().unwrap().strip_prefix("pid:").unwrap().to_string();
    assert!(pid_alive(&pid));
    // A restarted server's provisioner finds the process again.
    assert!(Local::with_program(program, cp).adopt(&host).await);

    // Scale in: the process ends and the instance is deregistered.
    put(&ctx, &keys::group("local-asg"), &group(0)).await;
    let mut gone = false;
    for _ in 0..400 {
        let hs = hosts(&ctx).await;
        let terminated = hs.iter().all(|h| h.lifecycle == Lifecycle::Terminated);
        let inactive =
            ctx.cache.read().instances.values().all(|e| e.value.instance.status.as_deref() == Some("INACTIVE"));
        if terminated && inactive && !pid_alive(&pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the local host did not go away");
    group_loop.stop().await;
    let _ = stop_tx.send(());
    served.await.unwrap().unwrap();
}
