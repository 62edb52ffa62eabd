//! The group loop with the `simulate` provisioner against a real control plane (redb store,
//! HTTP listener, agent sessions over websockets): a group's hosts register as container
//! instances of the template's cluster with `ec2InstanceId` = the host's id, a Spot
//! interruption (signed `POST /v1/spot/interrupt`) drains its host and terminates it at the
//! deadline, and lowering the desired capacity deregisters the hosts taken away.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use flotilla_api::handlers::{clusters, container_instances, services, task_definitions};
use flotilla_api::{Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_autoscaling::groups::{self, records, Settings};
use flotilla_autoscaling::provision::{simulate::Simulate, ControlPlane};
use flotilla_autoscaling::spot;
use flotilla_hosts::{keys, Host, Lifecycle};
use flotilla_store::{Op, Txn};
use serde_json::json;

const REGION: &str = "us-east-1";

struct Server {
    ctx: Ctx,
    endpoint: String,
    creds: RootCredentials,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let creds = RootCredentials {
        access_key_id: "AKIDFLOTILLATEST".into(),
        secret_access_key: "flotilla-test-secret-key-0123456789abcdef".into(),
    };
    let config = ServerConfig::new(dir.path().to_path_buf(), creds.clone());
    let ctx = flotilla_api::server::open(&config, Clock::system()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // The control plane's routes with the Spot endpoint mounted, as the server will mount it.
    let auth = flotilla_api::auth::Authenticator::new(REGION, creds.clone(), ctx.store.clone());
    let app = flotilla_api::server::router(ctx.clone(), &config)
        .merge(spot::router(ctx.clone(), Some(std::sync::Arc::new(auth))));
    let c = ctx.clone();
    ctx.loops.spawn("controller", move || flotilla_api::controller::run(c.clone(), Default::default()));
    let cp = ControlPlane {
        endpoint: endpoint.clone(),
        region: REGION.into(),
        access_key_id: creds.access_key_id.clone(),
        secret_access_key: creds.secret_access_key.clone(),
        ca_cert: None,
        data_dir: dir.path().to_path_buf(),
    };
    let settings = Settings {
        interval: Duration::from_millis(200),
        quiet: Duration::from_millis(50),
        ..Settings::with_root_secret(&creds.secret_access_key)
    };
    groups::spawn(&ctx, Arc::new(Simulate::new(cp).unwrap()), settings);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flotilla_api::tls::serve(flotilla_api::tls::Listening::Plain(listener), app, async move {
        let _ = rx.await;
    }));
    Server { ctx, endpoint, creds, _dir: dir, stop: Some(tx) }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn put<T: serde::Serialize>(ctx: &Ctx, key: &str, v: &T) {
    ctx.commit(Txn::new().then(Op::put(key, serde_json::to_vec(v).unwrap()))).await.unwrap();
}

fn template() -> serde_json::Value {
    let ud = "#!/bin/bash\necho ECS_CLUSTER=demo >> /etc/ecs/ecs.config\n\
              echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config\n\
              echo 'ECS_INSTANCE_ATTRIBUTES={\"stack\":\"blue\"}' >> /etc/ecs/ecs.config\n";
    json!({
        "id": "lt-0123456789abcdef0", "name": "ecs-spot", "created_at_ms": 0, "default_version": 1,
        "versions": [{"number": 1, "created_at_ms": 0, "instance_type": "c5.large",
                      "user_data": base64::engine::general_purpose::STANDARD.encode(ud)}]
    })
}

fn group(desired: u32) -> serde_json::Value {
    let vpc = flotilla_hosts::network::default_vpc(REGION);
    json!({
        "name": "spot-asg", "arn": "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:x:autoScalingGroupName/spot-asg",
        "created_at_ms": 0,
        "mixed_instances_policy": {
            "launch_template": {"id": "lt-0123456789abcdef0", "name": "ecs-spot", "version": "$Latest"},
            "instance_types": [],
            "distribution": {"on_demand_allocation_strategy": "prioritized", "on_demand_base_capacity": 1,
                             "on_demand_percentage_above_base_capacity": 0, "spot_allocation_strategy": "lowest-price"}
        },
        "min_size": 0, "max_size": 10, "desired_capacity": desired,
        "subnet_ids": vpc.subnets.iter().map(|s| s.subnet_id.clone()).collect::<Vec<_>>(),
        "availability_zones": vpc.subnets.iter().map(|s| s.availability_zone.clone()).collect::<Vec<_>>(),
    })
}

async fn hosts(ctx: &Ctx) -> Vec<Host> {
    records::load(ctx).await.unwrap().hosts.into_iter().map(|h| h.value).collect()
}

/// Container instances of `demo` not deregistered: (ec2InstanceId, status, attributes).
async fn instances(ctx: &Ctx) -> Vec<flotilla_model::ContainerInstance> {
    let listed =
        container_instances::list(ctx, serde_json::from_value(json!({"cluster": "demo"})).unwrap()).await.unwrap();
    let arns = listed.container_instance_arns.unwrap_or_default();
    if arns.is_empty() {
        return vec![];
    }
    let described = container_instances::describe(
        ctx,
        serde_json::from_value(json!({"cluster": "demo", "containerInstances": arns})).unwrap(),
    )
    .await
    .unwrap();
    described.container_instances.unwrap_or_default()
}

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(30), check).await
}

async fn eventually_within<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..bound.as_millis() / 100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

fn attr<'a>(ci: &'a flotilla_model::ContainerInstance, name: &str) -> Option<&'a str> {
    ci.attributes.as_ref()?.iter().find(|a| a.name.as_deref() == Some(name))?.value.as_deref()
}

/// `POST /v1/spot/interrupt` signed with `creds` (query form, empty body).
async fn interrupt(s: &Server, creds: (&str, &str), instance_id: &str, warning: u64) -> (u16, serde_json::Value) {
    let url = format!("{}{}?instanceId={instance_id}&warningSeconds={warning}", s.endpoint, spot::INTERRUPT_PATH);
    let uri: http::Uri = url.parse().unwrap();
    let mut headers = http::HeaderMap::new();
    let c = flotilla_sigv4::Credentials::new(creds.0, creds.1);
    let params =
        flotilla_sigv4::SigningParams { credentials: &c, region: REGION, service: "ecs", time: SystemTime::now() };
    flotilla_sigv4::sign(&http::Method::POST, &uri, &mut headers, b"", &params).unwrap();
    let resp = reqwest::Client::new().post(&url).headers(headers).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_hosts_join_drain_on_spot_notices_and_leave_on_scale_in() {
    let s = server().await;
    let ctx = &s.ctx;
    clusters::create(ctx, serde_json::from_value(json!({"clusterName": "demo"})).unwrap()).await.unwrap();
    put(ctx, &keys::launch_template("lt-0123456789abcdef0"), &template()).await;
    put(ctx, &keys::group("spot-asg"), &group(3)).await;

    // Three hosts, one per zone, one on-demand and two Spot, each a container instance of demo.
    eventually("three hosts register", || async {
        let hs = hosts(ctx).await;
        let cis = instances(ctx).await;
        hs.iter().filter(|h| h.lifecycle == Lifecycle::InService).count() == 3 && cis.len() == 3
    })
    .await;
    let hs = hosts(ctx).await;
    assert_eq!(hs.iter().filter(|h| h.spot).count(), 2);
    assert_eq!(hs.iter().map(|h| h.availability_zone.as_str()).collect::<HashSet<_>>().len(), 3);
    for ci in instances(ctx).await {
        let id = ci.ec2_instance_id.clone().unwrap();
        let h = hs.iter().find(|h| h.instance_id == id).expect("ec2InstanceId is a host's id");
        assert_eq!(attr(&ci, "ecs.availability-zone"), Some(h.availability_zone.as_str()));
        assert_eq!(attr(&ci, "ecs.instance-type"), Some("c5.large"));
        assert_eq!(attr(&ci, "stack"), Some("blue"));
        let cpu =
            ci.registered_resources.unwrap().iter().find(|r| r.name.as_deref() == Some("CPU")).unwrap().integer_value;
        assert_eq!(cpu, Some(2048));
    }

    // Only the root principal may interrupt; unknown and on-demand ids are refused clearly.
    let (code, body) = interrupt(&s, ("AKIDWRONG", "nope"), "i-0", 2).await;
    assert_eq!(code, 400, "{body}");
    let root = (s.creds.access_key_id.as_str(), s.creds.secret_access_key.as_str());
    let (code, body) = interrupt(&s, root, "i-00000000000000000", 2).await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("i-00000000000000000"), "{body}");
    let on_demand = hs.iter().find(|h| !h.spot).unwrap().instance_id.clone();
    let (_, body) = interrupt(&s, root, &on_demand, 2).await;
    assert!(body["message"].as_str().unwrap().contains("On-Demand"), "{body}");

    // A service with a task in each zone, so the Spot host about to go runs one.
    let td = json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "x", "memory": 64}]});
    task_definitions::register(ctx, serde_json::from_value(td).unwrap()).await.unwrap();
    let svc = json!({
        "cluster": "demo", "serviceName": "web", "taskDefinition": "web", "desiredCount": 3,
        "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
        "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 200}
    });
    services::create(ctx, serde_json::from_value(svc).unwrap()).await.unwrap();
    let tasks_on = |id: String| async move {
        let cis = instances(ctx).await;
        cis.iter().find(|c| c.ec2_instance_id.as_deref() == Some(&id)).and_then(|c| c.running_tasks_count).unwrap_or(0)
    };
    let running = || async {
        let d =
            services::describe(ctx, serde_json::from_value(json!({"cluster": "demo", "services": ["web"]})).unwrap())
                .await
                .unwrap();
        d.services.unwrap_or_default().first().and_then(|s| s.running_count).unwrap_or(0)
    };
    eventually("the service runs a task on every host", || async {
        let mut all = true;
        for h in &hs {
            all &= tasks_on(h.instance_id.clone()).await == 1;
        }
        all && running().await == 3
    })
    .await;

    // A Spot notice: DRAINING at once, the service moves its task off before the deadline, then
    // the host is terminated and deregistered and a replacement joins.
    let victim = hs.iter().find(|h| h.spot).unwrap().instance_id.clone();
    let noticed = std::time::Instant::now();
    let (code, body) = interrupt(&s, root, &victim, 10).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["draining"], true);
    let status_of = |cis: &[flotilla_model::ContainerInstance], id: &str| {
        cis.iter().find(|c| c.ec2_instance_id.as_deref() == Some(id)).and_then(|c| c.status.clone())
    };
    assert_eq!(status_of(&instances(ctx).await, &victim).as_deref(), Some("DRAINING"));
    eventually("the service replaces the draining host's task elsewhere", || async {
        tasks_on(victim.clone()).await == 0 && running().await == 3
    })
    .await;
    assert!(noticed.elapsed() < Duration::from_secs(10), "replaced before the deadline");
    eventually("the interrupted host is terminated and a replacement joins", || async {
        let hs = hosts(ctx).await;
        let cis = instances(ctx).await;
        let gone = hs.iter().any(|h| h.instance_id == victim && h.lifecycle == Lifecycle::Terminated);
        gone && status_of(&cis, &victim).is_none()
            && cis.len() == 3
            && hs.iter().filter(|h| h.lifecycle == Lifecycle::InService).count() == 3
    })
    .await;

    // Lower the desired capacity: two hosts go and their instances leave the listing.
    put(ctx, &keys::group("spot-asg"), &group(1)).await;
    eventually("scale-in deregisters two instances", || async {
        let live = hosts(ctx).await.into_iter().filter(groups::plan::is_live).count();
        live == 1 && instances(ctx).await.len() == 1
    })
    .await;
    // Every launch and termination is recorded (the last termination's activity may land a moment
    // after its instance has left the listing).
    eventually("4 launches and 3 terminations recorded", || async {
        ctx.store.list(&keys::activities_of("spot-asg")).await.unwrap().kvs.len() >= 7
    })
    .await;
}

/// A thousand simulated hosts in one process: they all register, then all go (about 10 s and 5 s
/// in a debug build on this 2-core machine; the bounds are far above that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_simulated_hosts_join_and_leave() {
    let s = server().await;
    let ctx = &s.ctx;
    clusters::create(ctx, serde_json::from_value(json!({"clusterName": "demo"})).unwrap()).await.unwrap();
    put(ctx, &keys::launch_template("lt-0123456789abcdef0"), &template()).await;
    put(ctx, &keys::group("spot-asg"), &group(1000)).await;
    let started = std::time::Instant::now();
    eventually_within("a thousand hosts register", Duration::from_secs(600), || async {
        ctx.cache.read().instances.values().filter(|e| e.value.instance.status.as_deref() == Some("ACTIVE")).count()
            == 1000
    })
    .await;
    eprintln!("1000 hosts registered in {:?}", started.elapsed());
    let hs = hosts(ctx).await;
    assert_eq!(hs.iter().filter(|h| h.lifecycle == Lifecycle::InService).count(), 1000);
    let started = std::time::Instant::now();
    put(ctx, &keys::group("spot-asg"), &group(0)).await;
    eventually_within("a thousand hosts leave", Duration::from_secs(600), || async {
        ctx.cache.read().instances.values().all(|e| e.value.instance.status.as_deref() == Some("INACTIVE"))
    })
    .await;
    eprintln!("1000 hosts terminated in {:?}", started.elapsed());
}
