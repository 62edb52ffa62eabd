//! GPUs as a placement resource: a task asking for GPUs goes only where enough are free, the
//! request's earlier tasks count against them, and instances turned down for them are counted
//! under ECS's `RESOURCE:GPU`.

mod common;

use common::{inst, request, strategies};
use flotilla_scheduler::{
    place, place_by_scan, verify, Env, FailureReason, Instance, InstanceStatus, Reason, Snapshot, Standing,
};

fn gpu_inst(n: usize, gpus: u32) -> Instance {
    Instance { remaining_gpus: gpus, ..inst(n, "a", 8192, 16384) }
}

#[test]
fn gpu_tasks_go_only_where_enough_gpus_are_free() {
    let cluster = vec![gpu_inst(0, 0), gpu_inst(1, 1), gpu_inst(2, 4)];
    let mut req = request(2);
    req.gpus = 2;
    for plan in [
        place(&Snapshot::new(cluster.clone()), &req, &Env { seed: 3 }).unwrap(),
        place_by_scan(&Snapshot::new(cluster.clone()), &req, &Env { seed: 3 }).unwrap(),
    ] {
        // Only instance 2 has two free GPUs, and it has room for exactly two such tasks.
        let chosen: Vec<usize> = plan.placements.iter().map(|p| p.instance).collect();
        assert_eq!(chosen, vec![2, 2]);
        assert_eq!(plan.unplaced, 0);
    }
}

#[test]
fn running_out_of_gpus_fails_as_resource_gpu() {
    let cluster = vec![gpu_inst(0, 0), gpu_inst(1, 1), gpu_inst(2, 4)];
    let mut req = request(3);
    req.gpus = 2;
    req.strategies = strategies(&[("spread", Some("instanceId"))]);
    let plan = place(&Snapshot::new(cluster), &req, &Env { seed: 3 }).unwrap();
    assert_eq!((plan.placements.len(), plan.unplaced), (2, 1));
    assert_eq!(plan.rejections.get(Reason::Gpu), 3);
    assert_eq!(plan.failures.len(), 1);
    assert_eq!(plan.failures[0].reason, FailureReason::Rejected(Reason::Gpu));
    assert_eq!(plan.failures[0].reason.ecs_reason(), "RESOURCE:GPU");
    assert_eq!(plan.failures[0].detail, "2 of 3 tasks placed, then 0 of 3 instances fit: 3 RESOURCE:GPU");
}

#[test]
fn cpu_and_memory_are_judged_before_gpus() {
    // Too little memory and no GPUs: counted under memory, the earlier check.
    let small = Instance { remaining_memory: 10, ..gpu_inst(0, 0) };
    let mut req = request(1);
    req.gpus = 1;
    let plan = place(&Snapshot::new(vec![small, gpu_inst(1, 0)]), &req, &Env::default()).unwrap();
    assert_eq!(plan.rejections.get(Reason::Memory), 1);
    assert_eq!(plan.rejections.get(Reason::Gpu), 1);
}

#[test]
fn tasks_without_gpus_ignore_them_and_apply_takes_them() {
    let mut snapshot = Snapshot::new(vec![gpu_inst(0, 0)]);
    let plan = place(&snapshot, &request(1), &Env::default()).unwrap();
    assert_eq!(plan.placements.len(), 1, "a CPU task fits an instance without GPUs");
    let mut snapshot2 = Snapshot::new(vec![gpu_inst(0, 3)]);
    let mut req = request(1);
    req.gpus = 2;
    let plan = place(&snapshot2, &req, &Env::default()).unwrap();
    snapshot2.apply(&plan, &req);
    assert_eq!(snapshot2.remaining_gpus(0), 1);
    assert_eq!(place(&snapshot2, &req, &Env::default()).unwrap().unplaced, 1);
    snapshot.apply(&plan, &request(1));
    assert_eq!(snapshot.remaining_gpus(0), 0);
}

#[test]
fn verify_counts_gpus_per_task() {
    let standing = Standing {
        status: InstanceStatus::Active,
        agent_connected: true,
        remaining_cpu: 4096,
        remaining_memory: 4096,
        remaining_gpus: 3,
        port_taken: Box::new(|_| false),
        group_tasks: 0,
    };
    let mut req = request(1);
    req.gpus = 1;
    assert_eq!(verify(&standing, &req, 3), Ok(()));
    assert_eq!(verify(&standing, &req, 4), Err(Reason::Gpu));
    req.gpus = 4;
    assert_eq!(verify(&standing, &req, 1), Err(Reason::Gpu));
}
