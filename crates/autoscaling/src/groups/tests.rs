//! The group loop against a fake provisioner, over an in-memory store and the real ECS handlers:
//! launches, failures and back-off, scale-in, drain-then-terminate, group deletion and adoption
//! after a restart. Time is a test clock; each test drives passes by hand.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use flotilla_api::{Clock, Ctx};
use flotilla_hosts::{keys, Activity, AutoScalingGroup, Host, LaunchTemplate, Lifecycle};
use flotilla_store::{Op, Txn};
use serde_json::json;

use super::{pass, records, Settings, Shared};
use crate::provision::{LaunchSpec, Launched, ProvisionError, Provisioner, Unconfigured};

#[derive(Default)]
struct Fake {
    launched: Mutex<Vec<LaunchSpec>>,
    terminated: Mutex<Vec<String>>,
    fail: AtomicBool,
    lost_on_restart: AtomicBool,
    dead: Mutex<Vec<String>>,
}

#[async_trait]
impl Provisioner for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn launch(&self, spec: &LaunchSpec, _t: Option<&str>) -> Result<Launched, ProvisionError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(ProvisionError::Failed("out of capacity in the fake".into()));
        }
        self.launched.lock().unwrap().push(spec.clone());
        Ok(Launched { handle: Some(format!("fake:{}", spec.instance_id)) })
    }
    async fn terminate(&self, host: &Host) -> Result<(), ProvisionError> {
        self.terminated.lock().unwrap().push(host.instance_id.clone());
        Ok(())
    }
    async fn adopt(&self, _host: &Host) -> bool {
        !self.lost_on_restart.load(Ordering::SeqCst)
    }
    async fn alive(&self, host: &Host) -> bool {
        !self.dead.lock().unwrap().contains(&host.instance_id)
    }
}

struct World {
    ctx: Ctx,
    now: Arc<AtomicI64>,
}

async fn world() -> World {
    let now = Arc::new(AtomicI64::new(1_796_544_000_000));
    let n = now.clone();
    let config = flotilla_api::ServerConfig {
        data_dir: std::env::temp_dir(),
        region: "us-east-1".into(),
        account_id: "000000000000".into(),
        auth: flotilla_api::AuthMode::Disabled,
        credentials: flotilla_api::RootCredentials { access_key_id: "AKID".into(), secret_access_key: "s".into() },
        controller: Default::default(),
        stopped_task_retention: Duration::ZERO,
        capacity: Default::default(),
        extensions: Default::default(),
        server_id: None,
        advertise_url: None,
        peer_tls: None,
    };
    let store = Arc::new(flotilla_store::MemoryStore::new());
    let ctx = flotilla_api::server::build_ctx(store, &config, Clock::from_fn(move || n.load(Ordering::SeqCst)))
        .await
        .unwrap();
    World { ctx, now }
}

fn template() -> LaunchTemplate {
    let ud = base64::engine::general_purpose::STANDARD
        .encode("#!/bin/bash\necho ECS_CLUSTER=default >> /etc/ecs/ecs.config\n");
    serde_json::from_value(json!({
        "id": "lt-0123456789abcdef0", "name": "ecs", "created_at_ms": 0, "default_version": 1,
        "versions": [{"number": 1, "created_at_ms": 0, "instance_type": "m5.large", "user_data": ud}]
    }))
    .unwrap()
}

fn group(desired: u32) -> AutoScalingGroup {
    serde_json::from_value(json!({
        "name": "asg", "arn": "arn:asg", "created_at_ms": 0,
        "launch_template": {"id": "lt-0123456789abcdef0", "name": "ecs"},
        "min_size": 0, "max_size": 10, "desired_capacity": desired,
        "availability_zones": ["us-east-1a", "us-east-1b", "us-east-1c"],
        "tags": [{"key": "team", "value": "blue", "propagate_at_launch": true}]
    }))
    .unwrap()
}

async fn put<T: serde::Serialize>(ctx: &Ctx, key: &str, v: &T) {
    ctx.commit(Txn::new().then(Op::put(key, serde_json::to_vec(v).unwrap()))).await.unwrap();
}

async fn hosts(ctx: &Ctx) -> Vec<Host> {
    records::load(ctx).await.unwrap().hosts.into_iter().map(|h| h.value).collect()
}

async fn activities(ctx: &Ctx) -> Vec<Activity> {
    let l = ctx.store.list(&keys::activities_of("asg")).await.unwrap();
    l.kvs.iter().map(|kv| serde_json::from_slice(&kv.value).unwrap()).collect()
}

/// Runs a pass and waits for what it started.
async fn settle(ctx: &Ctx, shared: &Arc<Shared>) {
    pass(ctx, shared).await.unwrap();
    for _ in 0..500 {
        if shared.under_way() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("launches or terminations did not finish");
}

async fn started(w: &World, p: Arc<dyn Provisioner>, desired: u32) -> Arc<Shared> {
    put(&w.ctx, &keys::launch_template("lt-0123456789abcdef0"), &template()).await;
    put(&w.ctx, &keys::group("asg"), &group(desired)).await;
    let shared = Arc::new(Shared::new(p, Settings { drain_timeout: Duration::from_secs(60), ..Settings::default() }));
    settle(&w.ctx, &shared).await; // the first pass of a process only adopts
    shared
}

#[tokio::test]
async fn launches_reach_desired_across_zones_and_record_activities() {
    let w = world().await;
    let fake = Arc::new(Fake::default());
    let shared = started(&w, fake.clone(), 3).await;
    settle(&w.ctx, &shared).await;
    let hs = hosts(&w.ctx).await;
    assert_eq!(hs.len(), 3);
    let mut zones: Vec<&str> = hs.iter().map(|h| h.availability_zone.as_str()).collect();
    zones.sort();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    assert!(hs.iter().all(|h| h.lifecycle == Lifecycle::InService && h.provisioner_handle.is_some()));
    assert!(hs.iter().all(|h| h.tags.iter().any(|t| t.key == "team")), "tags propagate");
    let spec = fake.launched.lock().unwrap()[0].clone();
    assert_eq!((spec.cpu, spec.memory, spec.cluster.as_str()), (2048, 7680, "default"));
    let acts = activities(&w.ctx).await;
    assert_eq!(acts.len(), 3);
    assert!(acts
        .iter()
        .all(|a| a.status_code == "Successful" && a.description.starts_with("Launching a new EC2 instance: i-")));
    // Level-triggered: another pass changes nothing.
    settle(&w.ctx, &shared).await;
    assert_eq!(fake.launched.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn without_a_provisioner_launches_fail_naming_the_flag_and_back_off() {
    let w = world().await;
    let shared = started(&w, Arc::new(Unconfigured), 1).await;
    settle(&w.ctx, &shared).await;
    assert!(hosts(&w.ctx).await.is_empty(), "a host that never came up is not kept");
    let acts = activities(&w.ctx).await;
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].status_code, "Failed");
    assert!(acts[0].status_message.as_deref().unwrap().contains("--provisioner"), "{acts:?}");
    settle(&w.ctx, &shared).await;
    assert_eq!(activities(&w.ctx).await.len(), 1, "backing off");
    w.now.fetch_add(11_000, Ordering::SeqCst);
    settle(&w.ctx, &shared).await;
    assert_eq!(activities(&w.ctx).await.len(), 2, "tried again after the back-off");
}

#[tokio::test]
async fn scale_in_terminates_unprotected_hosts_and_keeps_them_terminated_an_hour() {
    let w = world().await;
    let fake = Arc::new(Fake::default());
    let shared = started(&w, fake.clone(), 3).await;
    settle(&w.ctx, &shared).await;
    let protected = hosts(&w.ctx).await[0].instance_id.clone();
    records::update_host(&w.ctx, &protected, |h| {
        h.protected_from_scale_in = true;
        true
    })
    .await
    .unwrap();
    put(&w.ctx, &keys::group("asg"), &group(0)).await;
    settle(&w.ctx, &shared).await; // marks Terminating
    settle(&w.ctx, &shared).await; // terminates
    let hs = hosts(&w.ctx).await;
    let gone: Vec<&Host> = hs.iter().filter(|h| h.lifecycle == Lifecycle::Terminated).collect();
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|h| h.instance_id != protected));
    assert_eq!(fake.terminated.lock().unwrap().len(), 2);
    let acts = activities(&w.ctx).await;
    assert_eq!(acts.iter().filter(|a| a.description.starts_with("Terminating EC2 instance")).count(), 2);
    w.now.fetch_add(3_600_000, Ordering::SeqCst);
    settle(&w.ctx, &shared).await;
    assert_eq!(hosts(&w.ctx).await.len(), 1, "terminated hosts are forgotten after an hour");
}

#[tokio::test]
async fn a_busy_host_drains_before_it_is_terminated_and_its_instance_deregistered() {
    let w = world().await;
    let fake = Arc::new(Fake::default());
    let shared = started(&w, fake.clone(), 1).await;
    settle(&w.ctx, &shared).await;
    let id = hosts(&w.ctx).await[0].instance_id.clone();
    // The host's agent registers, and a task lands on it.
    // What a hollow agent of this host would send.
    let spec = fake.launched.lock().unwrap()[0].clone();
    let cfg = crate::provision::simulate::registration(&spec, std::env::temp_dir());
    let reg = flotilla_agent::session::registration::registration_request(&cfg, None);
    let ci = flotilla_api::handlers::container_instances::register(&w.ctx, reg).await.unwrap();
    let arn = ci.container_instance.unwrap().container_instance_arn.unwrap();
    // As if its session were up.
    flotilla_api::handlers::container_instances::modify(&w.ctx, "default", &arn, |ci| {
        ci.agent_connected = Some(true);
        Ok(())
    })
    .await
    .unwrap();
    let td: flotilla_model::RegisterTaskDefinitionRequest = serde_json::from_value(json!({
        "family": "web", "containerDefinitions": [{"name": "web", "image": "x", "memory": 64}]
    }))
    .unwrap();
    flotilla_api::handlers::task_definitions::register(&w.ctx, td).await.unwrap();
    let run: flotilla_model::RunTaskRequest =
        serde_json::from_value(json!({"cluster": "default", "taskDefinition": "web"})).unwrap();
    let out = flotilla_api::handlers::run_task::run(&w.ctx, run).await.unwrap();
    assert_eq!(out.tasks.clone().unwrap_or_default().len(), 1, "{:?}", out.failures);

    put(&w.ctx, &keys::group("asg"), &group(0)).await;
    settle(&w.ctx, &shared).await; // marked Terminating
    settle(&w.ctx, &shared).await; // drained, not terminated
    let status = |ctx: &Ctx| {
        let ix = ctx.cache.read();
        ix.instances
            .values()
            .find(|e| e.value.instance.container_instance_arn.as_deref() == Some(&arn))
            .unwrap()
            .value
            .instance
            .status
            .clone()
    };
    assert_eq!(status(&w.ctx).as_deref(), Some("DRAINING"));
    assert!(fake.terminated.lock().unwrap().is_empty(), "a host with tasks waits for them");
    settle(&w.ctx, &shared).await;
    assert!(fake.terminated.lock().unwrap().is_empty());
    // The drain timeout passes with the task still there: the host goes anyway.
    w.now.fetch_add(61_000, Ordering::SeqCst);
    settle(&w.ctx, &shared).await;
    assert_eq!(*fake.terminated.lock().unwrap(), vec![id.clone()]);
    assert_eq!(status(&w.ctx).as_deref(), Some("INACTIVE"), "deregistered with force");
    assert_eq!(hosts(&w.ctx).await[0].lifecycle, Lifecycle::Terminated);
}

#[tokio::test]
async fn a_group_being_deleted_loses_every_host_then_goes_with_its_activities() {
    let w = world().await;
    let fake = Arc::new(Fake::default());
    let shared = started(&w, fake.clone(), 2).await;
    settle(&w.ctx, &shared).await;
    for h in hosts(&w.ctx).await {
        records::update_host(&w.ctx, &h.instance_id, |h| {
            h.protected_from_scale_in = true;
            true
        })
        .await
        .unwrap();
    }
    let mut g = group(0);
    g.max_size = 0;
    g.status = Some("Delete in progress".into());
    put(&w.ctx, &keys::group("asg"), &g).await;
    settle(&w.ctx, &shared).await;
    settle(&w.ctx, &shared).await;
    assert_eq!(fake.terminated.lock().unwrap().len(), 2, "protection does not survive ForceDelete");
    settle(&w.ctx, &shared).await;
    assert!(w.ctx.store.get(&keys::group("asg")).await.unwrap().is_none());
    assert!(activities(&w.ctx).await.is_empty());
}

#[tokio::test]
async fn hosts_lost_in_a_restart_are_replaced() {
    let w = world().await;
    let fake = Arc::new(Fake::default());
    let shared = started(&w, fake.clone(), 1).await;
    settle(&w.ctx, &shared).await;
    let before = hosts(&w.ctx).await[0].instance_id.clone();
    fake.lost_on_restart.store(true, Ordering::SeqCst);
    // A new process: a fresh loop state.
    let again = Arc::new(Shared::new(fake.clone(), Settings::default()));
    settle(&w.ctx, &again).await; // adopts: the host is gone
    settle(&w.ctx, &again).await; // terminates it and launches a replacement
    settle(&w.ctx, &again).await;
    let hs = hosts(&w.ctx).await;
    let live: Vec<&Host> = hs.iter().filter(|h| h.lifecycle == Lifecycle::InService).collect();
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].instance_id, before);
    assert_eq!(hs.iter().find(|h| h.instance_id == before).unwrap().lifecycle, Lifecycle::Terminated);
}

#[tokio::test]
async fn a_failing_provisioner_leaves_no_host_behind() {
    let w = world().await;
    let fake = Arc::new(Fake::default());
    fake.fail.store(true, Ordering::SeqCst);
    let shared = started(&w, fake.clone(), 2).await;
    settle(&w.ctx, &shared).await;
    assert!(hosts(&w.ctx).await.is_empty());
    let acts = activities(&w.ctx).await;
    assert!(acts
        .iter()
        .all(|a| a.status_code == "Failed" && a.status_message.as_deref() == Some("out of capacity in the fake")));
}

#[tokio::test]
async fn a_host_that_died_is_marked_unhealthy_and_replaced() {
    let w = world().await;
    let fake = Arc::new(Fake::default());
    let shared = started(&w, fake.clone(), 1).await;
    settle(&w.ctx, &shared).await;
    let dead = hosts(&w.ctx).await[0].instance_id.clone();
    fake.dead.lock().unwrap().push(dead.clone());
    settle(&w.ctx, &shared).await; // health check: Terminating; a replacement launches
    settle(&w.ctx, &shared).await; // the dead one is terminated
    let hs = hosts(&w.ctx).await;
    let old = hs.iter().find(|h| h.instance_id == dead).unwrap();
    assert_eq!((old.lifecycle, old.health.as_str()), (Lifecycle::Terminated, "Unhealthy"));
    assert_eq!(hs.iter().filter(|h| h.lifecycle == Lifecycle::InService).count(), 1);
    let acts = activities(&w.ctx).await;
    assert!(acts.iter().any(|a| a.cause.contains("health check")), "{acts:?}");
}

#[tokio::test]
async fn activities_are_kept_six_weeks() {
    let w = world().await;
    let fake = Arc::new(Fake::default());
    let shared = started(&w, fake.clone(), 1).await;
    settle(&w.ctx, &shared).await;
    assert_eq!(activities(&w.ctx).await.len(), 1);
    w.now.fetch_add(43 * 24 * 3600 * 1000, Ordering::SeqCst);
    settle(&w.ctx, &shared).await;
    assert!(activities(&w.ctx).await.is_empty());
}
