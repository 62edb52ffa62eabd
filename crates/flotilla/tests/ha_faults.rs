//! Fault tests of the highly available control plane, on one machine: three etcd members, three
//! `flotilla server`s over them, hollow agents given all three servers, steady RunTask load with
//! clientTokens and a REPLICA service. One after another: kill -9 the leader; SIGSTOP the leader
//! past its lease and resume it; kill -9 an etcd member; kill -9 a server that does not lead.
//! After each, a new leader must take over and the service (scaled up at the fault) must reach its
//! new count; at the end a checker reads the final state: no acknowledged task lost, no
//! clientToken placed twice, no instance over its resources. The figures are printed (the
//! benchmark `ha-bench` reports them against their goals; tests never assert wall-clock times).

use std::path::Path;
use std::time::Duration;

use flotilla_bench::ha::bed::{Bed, Layout};
use flotilla_bench::ha::check::check;
use flotilla_bench::ha::faults::{inject, render, Fault};
use flotilla_bench::ha::load::{Load, Sampler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_survives_faults_under_load() {
    let mut dir = tempfile::tempdir().unwrap();
    // FLOTILLA_HA_KEEP=1 keeps the servers', agents' and etcd members' logs for a look.
    if std::env::var_os("FLOTILLA_HA_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping logs in {}", dir.path().display());
    }
    let layout = Layout::default();
    let cpu = layout.instance_cpu;
    let mut bed = Bed::start(Path::new(env!("CARGO_BIN_EXE_flotilla")), dir.path(), layout)
        .await
        .unwrap_or_else(|e| panic!("starting the bed (etcd-server must be installed): {e:#}"));
    let load = Load::start(bed.client.clone(), 60);
    let sampler = Sampler::start(bed.client.clone(), 200);
    let mut reports = Vec::new();
    for fault in [Fault::KillLeader, Fault::PauseLeader, Fault::KillEtcdMember, Fault::KillFollower] {
        let report = inject(&mut bed, fault).await.unwrap_or_else(|e| panic!("{}: {e:#}", fault.name()));
        eprintln!("{report:?}");
        reports.push(report);
    }
    let ledger = load.finish().await;
    let (above_max, most) = sampler.finish().await;
    let verdict = check(&bed.client, &ledger, cpu).await.expect("reading the final state");
    println!("{}", render(&reports));
    println!(
        "load: {} RunTask calls acknowledged ({} tasks), {} refused ({:?}), {} of unknown outcome; \
         the service ran above maximumPercent for {:.2} s (at most {most} tasks); {} tasks in the final state",
        ledger.acked.len(),
        verdict.acknowledged,
        ledger.refused,
        ledger.first_refusal,
        ledger.unknown.len(),
        above_max.as_secs_f64(),
        verdict.tasks_seen
    );
    assert!(ledger.acked.len() >= 8, "the load ran through the faults: {} calls acknowledged", ledger.acked.len());
    assert!(verdict.lost.is_empty(), "acknowledged tasks lost: {:?}", verdict.lost);
    assert!(verdict.doubled.is_empty(), "clientTokens placed twice: {:?}", verdict.doubled);
    assert!(verdict.over_capacity.is_empty(), "instances over their resources: {:?}", verdict.over_capacity);
    for r in &reports {
        if matches!(r.fault, Fault::KillLeader | Fault::PauseLeader) {
            assert!(r.new_leader.is_some(), "{}: no new leader", r.fault.name());
        }
    }
    let longest = reports.iter().map(|r| r.service_recovered).max().unwrap_or_default();
    assert!(
        above_max <= longest + Duration::from_secs(1),
        "the service ran above maximumPercent for {above_max:?}, longer than the longest failover ({longest:?})"
    );
}
