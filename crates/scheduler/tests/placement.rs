//! Table tests of the placement engine: every strategy, constraint and check against small clusters
//! whose right answer is worked out by hand in the comments.

mod common;

use common::{inst, member_of, request, strategies, with_group};
use flotilla_scheduler::{
    place, Constraint, Env, FailureReason, HostPort, Instance, InstanceStatus, Plan, Reason, Request, RequestError,
    RequiredAttribute, Snapshot, Strategy, MAX_COUNT,
};

fn run(instances: Vec<Instance>, req: &Request) -> Plan {
    place(&Snapshot::new(instances), req, &Env { seed: 7 }).unwrap()
}

fn chosen(plan: &Plan) -> Vec<usize> {
    plan.placements.iter().map(|p| p.instance).collect()
}

/// Tasks per instance, for `n` instances.
fn per_instance(plan: &Plan, n: usize) -> Vec<usize> {
    let mut v = vec![0; n];
    for p in &plan.placements {
        v[p.instance] += 1;
    }
    v
}

#[test]
fn binpack_memory_fills_the_fullest_instance_first() {
    // Memory left 4096, 1024, 2048; tasks take 512. Instance 1 takes two (1024 -> 512 -> 0), then
    // instance 2 (2048) is the fullest that fits, and keeps taking.
    let cluster = vec![inst(0, "a", 4096, 4096), inst(1, "a", 4096, 1024), inst(2, "a", 4096, 2048)];
    let mut req = request(4);
    req.strategies = strategies(&[("binpack", Some("memory"))]);
    assert_eq!(chosen(&run(cluster, &req)), vec![1, 1, 2, 2]);
}

#[test]
fn binpack_cpu_fills_by_cpu_not_memory() {
    // CPU left 1024, 512, 4096 (memory the other way round); tasks take 256 cpu.
    let cluster = vec![inst(0, "a", 1024, 1024), inst(1, "a", 512, 8192), inst(2, "a", 4096, 512)];
    let mut req = request(3);
    req.strategies = strategies(&[("binpack", Some("cpu"))]);
    // 512 -> 256 -> 0 on instance 1, then instance 0 (1024).
    assert_eq!(chosen(&run(cluster, &req)), vec![1, 1, 0]);
}

#[test]
fn spread_on_instance_id_evens_out_the_group() {
    // Instance 0 already runs 2 tasks of the group: 4 new tasks go 2 and 2 to instances 1 and 2.
    let cluster =
        vec![with_group(inst(0, "a", 4096, 8192), "family:web", 2), inst(1, "a", 4096, 8192), inst(2, "b", 4096, 8192)];
    for field in ["instanceId", "host"] {
        let mut req = request(4);
        req.strategies = strategies(&[("spread", Some(field))]);
        assert_eq!(per_instance(&run(cluster.clone(), &req), 3), vec![0, 2, 2], "{field}");
    }
    // Other groups do not count.
    let cluster = vec![with_group(inst(0, "a", 4096, 8192), "family:db", 5), inst(1, "a", 4096, 8192)];
    let mut req = request(2);
    req.strategies = strategies(&[("spread", Some("instanceId"))]);
    assert_eq!(per_instance(&run(cluster, &req), 2), vec![1, 1]);
}

#[test]
fn spread_on_zone_balances_zones_counting_existing_tasks() {
    // Zones a (2 instances, 1 task of the group), b (1), c (1). Six tasks: b and c first, then all
    // three level at 1, then one each again... final zone counts 3/3/3 including the old task.
    let cluster = vec![
        with_group(inst(0, "a", 4096, 8192), "family:web", 1),
        inst(1, "a", 4096, 8192),
        inst(2, "b", 4096, 8192),
        inst(3, "c", 4096, 8192),
    ];
    let mut req = request(8);
    req.strategies = strategies(&[("spread", Some("attribute:ecs.availability-zone"))]);
    let plan = run(cluster, &req);
    let n = per_instance(&plan, 4);
    assert_eq!((n[0] + n[1] + 1, n[2], n[3]), (3, 3, 3));
    // The first two tasks go to the empty zones b and c.
    let mut first: Vec<usize> = chosen(&plan)[..2].to_vec();
    first.sort();
    assert_eq!(first, vec![2, 3]);
}

#[test]
fn spread_zone_then_binpack_memory_packs_within_each_zone() {
    // Zone a: memory 8192 and 1024; zone b: 2048 and 8192. Four tasks of 512: zones alternate,
    // and within a zone the fuller instance takes the task while it fits.
    let cluster =
        vec![inst(0, "a", 4096, 8192), inst(1, "a", 4096, 1024), inst(2, "b", 4096, 2048), inst(3, "b", 4096, 8192)];
    let mut req = request(4);
    req.strategies = strategies(&[("spread", Some("attribute:ecs.availability-zone")), ("binpack", Some("memory"))]);
    assert_eq!(per_instance(&run(cluster, &req), 4), vec![0, 2, 2, 0]);
}

#[test]
fn spread_zone_then_instance_puts_one_task_per_instance() {
    let cluster: Vec<Instance> = (0..6).map(|n| inst(n, ["a", "b", "c"][n % 3], 4096, 8192)).collect();
    let mut req = request(6);
    req.strategies = strategies(&[("spread", Some("attribute:ecs.availability-zone")), ("spread", Some("instanceId"))]);
    assert_eq!(per_instance(&run(cluster, &req), 6), vec![1; 6]);
}

#[test]
fn binpack_then_spread_uses_spread_only_to_break_ties() {
    // Instances 0 and 1 tie on memory (2048); 0 is in zone a, which already has a task of the
    // group on instance 2 (memory 8192). The tie goes to instance 1 in the empty zone b.
    let cluster =
        vec![inst(0, "a", 4096, 2048), inst(1, "b", 4096, 2048), with_group(inst(2, "a", 4096, 8192), "family:web", 1)];
    let mut req = request(1);
    req.strategies = strategies(&[("binpack", Some("memory")), ("spread", Some("attribute:ecs.availability-zone"))]);
    assert_eq!(chosen(&run(cluster, &req)), vec![1]);
}

#[test]
fn spread_over_a_missing_attribute_treats_missing_as_one_value() {
    let mut bare = inst(2, "x", 4096, 8192);
    bare.attributes.clear();
    let cluster = vec![inst(0, "a", 4096, 8192), inst(1, "b", 4096, 8192), bare];
    let mut req = request(3);
    req.strategies = strategies(&[("spread", Some("attribute:ecs.availability-zone"))]);
    assert_eq!(per_instance(&run(cluster.clone(), &req), 3), vec![1, 1, 1]);
    // An attribute no instance has: one bucket, every instance tied.
    req.strategies = strategies(&[("spread", Some("attribute:rack"))]);
    assert_eq!(run(cluster, &req).placements.len(), 3);
}

#[test]
fn random_is_seeded_uniform_and_ends_the_strategy_list() {
    let cluster: Vec<Instance> = (0..4).map(|n| inst(n, "a", 1 << 20, 1 << 20)).collect();
    let snapshot = Snapshot::new(cluster);
    let mut req = request(10);
    req.strategies = strategies(&[("random", None)]);
    let mut hits = [0usize; 4];
    for seed in 0..400 {
        let plan = place(&snapshot, &req, &Env { seed }).unwrap();
        assert_eq!(plan, place(&snapshot, &req, &Env { seed }).unwrap());
        for p in &plan.placements {
            hits[p.instance] += 1;
        }
    }
    assert!(hits.iter().all(|h| (850..1150).contains(h)), "{hits:?}");
    // Strategies after random never rank: the plan is the one of random alone.
    let mut after = req.clone();
    after.strategies = strategies(&[("random", None), ("binpack", Some("memory"))]);
    assert_eq!(place(&snapshot, &req, &Env { seed: 3 }), place(&snapshot, &after, &Env { seed: 3 }));
}

#[test]
fn random_falls_back_to_a_scan_when_few_instances_fit() {
    // One instance in 2000 fits: sampling gives up and the full scan still finds it.
    let mut cluster: Vec<Instance> = (0..2000).map(|n| inst(n, "a", 4096, 64)).collect();
    cluster[1234].remaining_memory = 8192;
    let mut req = request(2);
    req.strategies = strategies(&[("random", None)]);
    assert_eq!(chosen(&run(cluster, &req)), vec![1234, 1234]);
}

#[test]
fn distinct_instance_places_each_task_of_the_group_on_its_own_instance() {
    // Instance 0 already runs the group; 1 and 2 take one task each; the third cannot be placed.
    let cluster =
        vec![with_group(inst(0, "a", 4096, 8192), "family:web", 1), inst(1, "a", 4096, 8192), inst(2, "a", 4096, 8192)];
    let mut req = request(3);
    req.constraints = vec![Constraint::DistinctInstance];
    let plan = run(cluster, &req);
    assert_eq!(per_instance(&plan, 3), vec![0, 1, 1]);
    assert_eq!(plan.unplaced, 1);
    assert_eq!(plan.rejections.get(Reason::DistinctInstance), 3);
    assert_eq!(plan.failures[0].reason.ecs_reason(), "ATTRIBUTE");
    assert_eq!(
        plan.failures[0].detail,
        "2 of 3 tasks placed, then 0 of 3 instances fit: 3 ATTRIBUTE (distinctInstance)"
    );
}

#[test]
fn member_of_selects_by_attribute_group_and_counts() {
    let cluster = || {
        vec![
            inst(0, "us-east-1a", 4096, 8192),
            with_group(inst(1, "us-east-1b", 4096, 8192), "database", 1),
            inst(2, "us-east-1c", 4096, 8192),
            with_group(inst(3, "us-east-1a", 4096, 8192), "database", 2),
        ]
    };
    let table: &[(&str, u32, &[usize])] = &[
        // (expression, count, tasks per instance)
        ("attribute:ecs.availability-zone == us-east-1a", 2, &[1, 0, 0, 1]),
        ("attribute:ecs.instance-type =~ t3.*", 2, &[1, 0, 1, 0]),
        ("attribute:ecs.availability-zone in [us-east-1b, us-east-1c]", 2, &[0, 1, 1, 0]),
        ("task:group == database", 2, &[0, 1, 0, 1]),
        ("not(task:group == database)", 2, &[1, 0, 1, 0]),
        ("runningTasksCount == 0", 2, &[1, 0, 1, 0]),
        ("ec2InstanceId == i-00000002", 1, &[0, 0, 1, 0]),
    ];
    for (expr, count, want) in table {
        let mut req = request(*count);
        req.constraints = vec![member_of(expr)];
        req.strategies = strategies(&[("spread", Some("instanceId"))]);
        assert_eq!(per_instance(&run(cluster(), &req), 4), *want, "{expr}");
    }
}

#[test]
fn member_of_sees_the_tasks_placed_earlier_in_the_request() {
    let cluster: Vec<Instance> = (0..3).map(|n| inst(n, "a", 4096, 8192)).collect();
    // Anti-affinity with the request's own group: one task per instance, then none.
    let mut req = request(4);
    req.constraints = vec![member_of("not(task:group == family:web)")];
    req.strategies = strategies(&[("binpack", Some("memory"))]);
    let plan = run(cluster.clone(), &req);
    assert_eq!((per_instance(&plan, 3), plan.unplaced), (vec![1, 1, 1], 1));
    assert_eq!(plan.rejections.get(Reason::MemberOf), 3);
    // The same through the sampling path (random).
    req.strategies = strategies(&[("random", None)]);
    let plan = run(cluster.clone(), &req);
    assert_eq!((per_instance(&plan, 3), plan.unplaced), (vec![1, 1, 1], 1));
    // Affinity to the request's own group becomes true once a task of it is placed.
    let mut seeded = cluster.clone();
    seeded[1] = with_group(seeded[1].clone(), "family:web", 1);
    let mut req = request(3);
    req.constraints = vec![member_of("task:group == family:web")];
    assert_eq!(per_instance(&run(seeded, &req), 3), vec![0, 3, 0]);
    // runningTasksCount counts the request's own tasks.
    let mut req = request(5);
    req.constraints = vec![member_of("runningTasksCount < 2")];
    req.strategies = strategies(&[("binpack", Some("memory"))]);
    let plan = run(cluster, &req);
    assert_eq!((plan.placements.len(), plan.unplaced), (5, 0));
    assert!(per_instance(&plan, 3).iter().all(|n| *n <= 2));
}

#[test]
fn required_attributes_need_the_name_and_the_value_when_given() {
    let mut gpu = inst(1, "a", 4096, 8192);
    gpu.attributes.push(("ecs.capability.gpu".into(), None));
    gpu.attributes.push(("os".into(), Some("linux".into())));
    let cluster = vec![inst(0, "a", 4096, 8192), gpu];
    let cases: &[(&str, Option<&str>, Option<usize>)] = &[
        ("ecs.capability.gpu", None, Some(1)),
        ("os", Some("linux"), Some(1)),
        ("os", Some("windows"), None),
        ("ecs.capability.unheard-of", None, None),
    ];
    for (name, value, want) in cases {
        let mut req = request(1);
        req.required_attributes = vec![RequiredAttribute { name: name.to_string(), value: value.map(String::from) }];
        let plan = run(cluster.clone(), &req);
        assert_eq!(chosen(&plan).first().copied(), *want, "{name}={value:?}");
        if want.is_none() {
            assert_eq!(plan.rejections.get(Reason::Attribute), 2);
            assert_eq!(plan.failures[0].detail, "0 of 2 instances fit: 2 ATTRIBUTE (requiresAttributes)");
        }
    }
}

#[test]
fn status_agent_and_resources_are_checked_cheapest_first() {
    let mut draining = inst(0, "a", 4096, 8192);
    draining.status = InstanceStatus::Draining;
    let mut inactive = inst(1, "a", 4096, 8192);
    inactive.status = InstanceStatus::from_wire("DEREGISTERING");
    // Disconnected and also too small: counted under AGENT, the earlier check.
    let mut gone = inst(2, "a", 0, 0);
    gone.agent_connected = false;
    let cluster =
        vec![draining, inactive, gone, inst(3, "a", 100, 8192), inst(4, "a", 4096, 100), inst(5, "a", 4096, 8192)];
    let mut req = request(2);
    req.ports = vec![HostPort::tcp(22)];
    let plan = run(cluster.clone(), &req);
    assert_eq!(plan.placements.len(), 0);
    let r = &plan.rejections;
    let got: Vec<u32> = [Reason::Draining, Reason::Inactive, Reason::Agent, Reason::Cpu, Reason::Memory, Reason::Ports]
        .iter()
        .map(|x| r.get(*x))
        .collect();
    assert_eq!(got, vec![1, 1, 1, 1, 1, 1]);
    let reasons: Vec<&str> = plan.failures.iter().map(|f| f.reason.ecs_reason()).collect();
    assert_eq!(reasons, vec!["DRAINING", "INACTIVE", "AGENT", "RESOURCE:CPU", "RESOURCE:MEMORY", "RESOURCE:PORTS"]);
    assert_eq!(
        plan.failures[2].arn.as_deref(),
        Some("arn:aws:ecs:us-east-1:000000000000:container-instance/default/0002")
    );
    // Without the port, instance 5 takes both tasks.
    req.ports.clear();
    assert_eq!(chosen(&run(cluster, &req)), vec![5, 5]);
}

#[test]
fn ports_conflict_by_protocol_and_within_the_request() {
    let mut busy = inst(0, "a", 4096, 8192);
    busy.used_ports.push(HostPort::tcp(80));
    let cluster = vec![busy, inst(1, "a", 4096, 8192)];
    // udp/80 is free on instance 0 even though tcp/80 is taken.
    let mut req = request(2);
    req.ports = vec![HostPort::udp(80)];
    req.strategies = strategies(&[("binpack", Some("memory"))]);
    assert_eq!(per_instance(&run(cluster.clone(), &req), 2), vec![1, 1]);
    // tcp/80: only instance 1, and only once: the second task would collide with the first.
    req.ports = vec![HostPort::tcp(80)];
    let plan = run(cluster, &req);
    assert_eq!((chosen(&plan), plan.unplaced), (vec![1], 1));
    assert_eq!(plan.rejections.get(Reason::Ports), 2);
}

#[test]
fn earlier_placements_count_against_capacity() {
    // 1000 cpu fits three tasks of 256 and not a fourth.
    let cluster = vec![inst(0, "a", 1000, 8192)];
    let plan = run(cluster, &request(4));
    assert_eq!((plan.placements.len(), plan.unplaced), (3, 1));
    assert_eq!(plan.failures[0].detail, "3 of 4 tasks placed, then 0 of 1 instances fit: 1 RESOURCE:CPU");
}

#[test]
fn a_task_too_big_for_every_instance_names_memory_with_counts() {
    // 12 instances: 9 too small for 6 GiB, 3 outside the memberOf zone.
    let mut cluster: Vec<Instance> = (0..9).map(|n| inst(n, "a", 4096, 4096)).collect();
    cluster.extend((9..12).map(|n| inst(n, "b", 4096, 16384)));
    let mut req = request(1);
    req.memory = 6144;
    req.constraints = vec![member_of("attribute:ecs.availability-zone == a")];
    let plan = run(cluster, &req);
    assert_eq!(plan.unplaced, 1);
    assert_eq!(plan.failures[0].reason, FailureReason::Rejected(Reason::Memory));
    assert_eq!(plan.failures[0].reason.ecs_reason(), "RESOURCE:MEMORY");
    assert_eq!(plan.failures[0].detail, "0 of 12 instances fit: 9 RESOURCE:MEMORY, 3 ATTRIBUTE (memberOf)");
    assert_eq!(plan.failures[1].reason.ecs_reason(), "ATTRIBUTE");
}

#[test]
fn an_empty_cluster_is_missing() {
    let plan = run(vec![], &request(2));
    assert_eq!(plan.unplaced, 2);
    assert_eq!(plan.failures[0].reason.ecs_reason(), "MISSING");
}

#[test]
fn requests_outside_ecs_limits_are_refused() {
    let snapshot = Snapshot::new(vec![inst(0, "a", 1, 1)]);
    for count in [0, MAX_COUNT + 1] {
        assert_eq!(place(&snapshot, &request(count), &Env::default()), Err(RequestError::Count(count)));
    }
    let mut req = request(1);
    req.strategies = vec![Strategy::Random; 6];
    assert_eq!(place(&snapshot, &req, &Env::default()), Err(RequestError::TooManyStrategies(6)));
}

#[test]
fn wire_strategies_and_constraints() {
    assert!(Strategy::from_wire("binpack", Some("MEMORY")).is_ok());
    assert!(Strategy::from_wire("spread", Some("attribute:ecs.availability-zone")).is_ok());
    let bad: &[(&str, Option<&str>, &str)] = &[
        ("binpack", Some("disk"), "binpack takes the field cpu or memory, not 'disk'"),
        ("binpack", None, "binpack takes the field cpu or memory, not nothing"),
        ("spread", Some("zone"), "spread takes the field instanceId, host or attribute:NAME, not 'zone'"),
        ("spread", Some("attribute:"), "spread takes the field instanceId, host or attribute:NAME, not 'attribute:'"),
        ("random", Some("cpu"), "random takes no field"),
        ("pack", None, "unknown placement strategy type 'pack'"),
    ];
    for (kind, field, msg) in bad {
        let err = Strategy::from_wire(kind, *field).unwrap_err().to_string();
        assert!(err.contains(msg), "{err}");
    }
    assert!(matches!(Constraint::from_wire("distinctInstance", None), Ok(Constraint::DistinctInstance)));
    assert!(Constraint::from_wire("distinctInstance", Some("x == y")).is_err());
    assert!(Constraint::from_wire("memberOf", None).is_err());
    assert!(Constraint::from_wire("sameZone", None).is_err());
    // A memberOf with a typo: a precise error with its column.
    match Constraint::from_wire("memberOf", Some("attribute:ecs.availability-zone = us-east-1a")) {
        Err(RequestError::Expression(e)) => {
            assert_eq!(e.column(), 33);
            assert_eq!(
                RequestError::Expression(e).to_string(),
                "invalid placement constraint expression: unknown operator '=': did you mean '=='? at column 33"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn three_zones_nine_tasks_three_each() {
    // The "done means": hollow agents in three zones, run-task --count 9 spread by zone.
    let cluster: Vec<Instance> =
        (0..30).map(|n| inst(n, ["us-east-1a", "us-east-1b", "us-east-1c"][n % 3], 2048, 4096)).collect();
    let mut req = request(9);
    req.strategies = strategies(&[("spread", Some("attribute:ecs.availability-zone"))]);
    for seed in 0..20 {
        let plan = place(&Snapshot::new(cluster.clone()), &req, &Env { seed }).unwrap();
        let mut zones = [0; 3];
        for p in &plan.placements {
            zones[p.instance % 3] += 1;
        }
        assert_eq!(zones, [3, 3, 3]);
    }
}

#[test]
fn apply_reserves_what_the_plan_took() {
    let mut snapshot = Snapshot::new(vec![inst(0, "a", 1024, 2048)]);
    let mut req = request(2);
    req.ports = vec![HostPort::tcp(8080)];
    req.count = 1;
    let plan = place(&snapshot, &req, &Env::default()).unwrap();
    snapshot.apply(&plan, &req);
    assert_eq!(snapshot.remaining(0), (768, 1536));
    assert!(snapshot.port_used(0, HostPort::tcp(8080)));
    assert_eq!(snapshot.group_count(0, "family:web"), 1);
    // The port is now taken: the next identical request finds no room.
    assert_eq!(place(&snapshot, &req, &Env::default()).unwrap().rejections.get(Reason::Ports), 1);
}

#[test]
fn snapshot_facts_filter_like_list_container_instances() {
    let snapshot = Snapshot::new((0..6).map(|n| inst(n, ["a", "b"][n % 2], 1, 1)).collect());
    let expr =
        flotilla_scheduler::parse("attribute:ecs.availability-zone == b and attribute:ecs.instance-type =~ m5.*")
            .unwrap();
    let hits: Vec<usize> = (0..snapshot.len()).filter(|i| expr.eval(&snapshot.facts(*i))).collect();
    assert_eq!(hits, vec![1, 3, 5]);
    assert_eq!(snapshot.filter(&expr), vec![1, 3, 5]);
}
