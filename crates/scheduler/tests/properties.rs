//! Property tests of the placement engine against a reference model written the slow, obvious way
//! (strings, full scans, the generic query evaluator): every placement is feasible when it is made
//! (no instance oversubscribed in cpu, memory or ports; constraints hold), every placement is a best
//! one under the strategies, the engine never gives up while something still fits, spread keeps
//! zones within one task of each other, distinctInstance never doubles up, and a seed names a plan.

mod common;

use common::{inst, member_of};
use flotilla_scheduler::{
    place, place_by_scan, Constraint, Env, Facts, HostPort, Instance, InstanceStatus, Plan, Request, RequiredAttribute,
    Resource, Snapshot, SpreadField, Strategy,
};
use proptest::prelude::*;
use proptest::strategy::Strategy as PStrategy;

const GROUP: &str = "family:web";

/// One instance with the tasks the request placed on it so far, seen through the query language.
struct View<'a> {
    inst: &'a Instance,
    placed: u32,
}

impl Facts for View<'_> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.inst.attribute(name)
    }
    fn ec2_instance_id(&self) -> &str {
        &self.inst.ec2_instance_id
    }
    fn agent_connected(&self) -> bool {
        self.inst.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.inst.agent_version.as_deref()
    }
    fn registered_at_ms(&self) -> i64 {
        self.inst.registered_at_ms
    }
    fn running_tasks_count(&self) -> u64 {
        u64::from(self.inst.running_tasks_count + self.placed)
    }
    fn any_task_group(&self, test: &mut dyn FnMut(&str) -> bool) -> bool {
        (self.placed > 0 && test(GROUP)) || self.inst.any_task_group(test)
    }
}

/// The reference model: the state each instance is in as the request's placements are replayed.
struct Model<'a> {
    instances: &'a [Instance],
    req: &'a Request,
    cpu: Vec<i64>,
    memory: Vec<i64>,
    group: Vec<u32>,
    placed: Vec<u32>,
}

impl<'a> Model<'a> {
    fn new(instances: &'a [Instance], req: &'a Request) -> Self {
        let group =
            instances.iter().map(|i| i.task_groups.iter().filter(|(g, _)| g == GROUP).map(|(_, n)| *n).sum()).collect();
        Model {
            instances,
            req,
            cpu: instances.iter().map(|i| i.remaining_cpu).collect(),
            memory: instances.iter().map(|i| i.remaining_memory).collect(),
            group,
            placed: vec![0; instances.len()],
        }
    }

    fn feasible(&self, i: usize) -> bool {
        let inst = &self.instances[i];
        let view = View { inst, placed: self.placed[i] };
        inst.status == InstanceStatus::Active
            && inst.agent_connected
            && self.req.required_attributes.iter().all(|ra| match (inst.attribute(&ra.name), &ra.value) {
                (Some(v), Some(want)) => v == want,
                (found, None) => found.is_some(),
                (None, Some(_)) => false,
            })
            && self.req.constraints.iter().all(|c| match c {
                Constraint::DistinctInstance => self.group[i] == 0,
                Constraint::MemberOf(e) => e.eval(&view),
            })
            && self.cpu[i] >= i64::from(self.req.cpu)
            && self.memory[i] >= i64::from(self.req.memory)
            && (self.req.ports.is_empty()
                || (self.placed[i] == 0 && self.req.ports.iter().all(|p| !inst.used_ports.contains(p))))
    }

    /// The lexicographic rank of an instance under the strategies (smaller is better).
    fn key(&self, i: usize) -> Vec<i64> {
        let mut key = Vec::new();
        for s in &self.req.strategies {
            key.push(match s {
                Strategy::Random => break,
                Strategy::Binpack(Resource::Cpu) => self.cpu[i],
                Strategy::Binpack(Resource::Memory) => self.memory[i],
                Strategy::Spread(SpreadField::Instance) => i64::from(self.group[i]),
                Strategy::Spread(SpreadField::Attribute(name)) => {
                    let value = self.instances[i].attribute(name);
                    (0..self.instances.len())
                        .filter(|j| self.instances[*j].attribute(name) == value)
                        .map(|j| i64::from(self.group[j]))
                        .sum()
                }
            });
        }
        key
    }

    fn apply(&mut self, i: usize) {
        self.cpu[i] -= i64::from(self.req.cpu);
        self.memory[i] -= i64::from(self.req.memory);
        self.group[i] += 1;
        self.placed[i] += 1;
    }
}

/// Replays the plan against the model, checking each placement as it is made.
fn verify(instances: &[Instance], req: &Request, plan: &Plan) -> Result<(), TestCaseError> {
    let mut m = Model::new(instances, req);
    for (k, p) in plan.placements.iter().enumerate() {
        let i = p.instance;
        prop_assert!(m.feasible(i), "placement {k} on instance {i} does not fit: {plan:?}");
        let best = (0..instances.len()).filter(|j| m.feasible(*j)).map(|j| m.key(j)).min().unwrap();
        prop_assert_eq!(m.key(i), best, "placement {} on {} is not a best choice", k, i);
        if let Some(Strategy::Binpack(r)) = req.strategies.first() {
            let left = |m: &Model, j: usize| if *r == Resource::Cpu { m.cpu[j] } else { m.memory[j] };
            for j in (0..instances.len()).filter(|j| m.feasible(*j)) {
                prop_assert!(left(&m, i) <= left(&m, j), "binpack chose {} over the fuller {}", i, j);
            }
        }
        m.apply(i);
        prop_assert!(m.cpu[i] >= 0 && m.memory[i] >= 0, "instance {} oversubscribed", i);
    }
    prop_assert_eq!(plan.placements.len() + plan.unplaced as usize, req.count as usize);
    if plan.unplaced > 0 {
        prop_assert!((0..instances.len()).all(|j| !m.feasible(j)), "gave up while an instance still fits");
        prop_assert_eq!(plan.rejections.total() as usize, instances.len());
        prop_assert!(!plan.failures.is_empty());
    }
    Ok(())
}

fn instance() -> impl PStrategy<Value = Instance> {
    (
        0usize..4,                                            // zone a, b, c or none
        0i64..5,                                              // cpu in 512s
        0i64..5,                                              // memory in 1024s
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 0, 1, 2]), // mostly ACTIVE
        prop::bool::weighted(0.9),                            // agent connected
        prop::bool::weighted(0.3),                            // tcp/80 taken
        0u32..3,                                              // tasks of the group
        0u32..2,                                              // tasks of another group
        any::<bool>(),                                        // instance type
    )
        .prop_map(|(zone, cpu, mem, status, agent, port, web, db, big)| {
            let mut i = inst(0, ["a", "b", "c", "-"][zone], cpu * 512, mem * 1024);
            if zone == 3 {
                i.attributes.retain(|(n, _)| n != "ecs.availability-zone");
            }
            if let Some(t) = i.attributes.iter_mut().find(|(n, _)| n == "ecs.instance-type") {
                t.1 = Some(if big { "m5.xlarge" } else { "t3.large" }.into());
            }
            i.status = [InstanceStatus::Active, InstanceStatus::Draining, InstanceStatus::Inactive][status as usize];
            i.agent_connected = agent;
            if port {
                i.used_ports.push(HostPort::tcp(80));
            }
            i.task_groups = vec![(GROUP.into(), web), ("family:db".into(), db)];
            i.running_tasks_count = web + db;
            i
        })
}

fn cluster() -> impl PStrategy<Value = Vec<Instance>> {
    prop::collection::vec(instance(), 1..30).prop_map(|mut v| {
        for (n, i) in v.iter_mut().enumerate() {
            i.arn = format!("arn:{n}");
            i.ec2_instance_id = format!("i-{n:08x}");
        }
        v
    })
}

fn strategy() -> impl PStrategy<Value = Strategy> {
    prop::sample::select(vec![
        Strategy::Binpack(Resource::Cpu),
        Strategy::Binpack(Resource::Memory),
        Strategy::Spread(SpreadField::Instance),
        Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
        Strategy::Spread(SpreadField::Attribute("ecs.instance-type".into())),
        Strategy::Random,
    ])
}

const EXPRESSIONS: &[&str] = &[
    "attribute:ecs.availability-zone in [a, b]",
    "not(task:group == family:web)",
    "task:group == family:db or runningTasksCount < 2",
    "attribute:ecs.instance-type =~ t3.*",
    "attribute:ecs.availability-zone !exists or agentConnected == true",
    "runningTasksCount <= 2 and not attribute:ecs.availability-zone == c",
];

/// More expressions for the filter property: every subject and operator family.
const FILTERS: &[&str] = &[
    "attribute:ecs.instance-type != t3.large or attribute:ecs.availability-zone !exists",
    "attribute:ecs.availability-zone =~ [ab] and not attribute:ecs.instance-type in [m5.xlarge]",
    "task:group exists and task:group !~ family:d.*",
    "task:group != family:web",
    "ec2InstanceId in [i-00000001, i-00000003] or runningTasksCount >= 2",
    "agentConnected == false or agentVersion < 1.81",
    "registeredAt > 2023-11-14T22:13:20Z",
    "attribute:nothing exists or attribute:nothing !exists",
];

fn request() -> impl PStrategy<Value = Request> {
    (
        1u32..=10,
        prop::sample::select(vec![0u32, 128, 256, 1024]),
        prop::sample::select(vec![64u32, 512, 2048]),
        prop::bool::weighted(0.25),
        prop::collection::vec(strategy(), 0..4),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.5, prop::sample::select(EXPRESSIONS)),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(count, cpu, memory, port, strategies, distinct, expr, needs_type)| {
            let mut constraints = Vec::new();
            if distinct {
                constraints.push(Constraint::DistinctInstance);
            }
            if let Some(e) = expr {
                constraints.push(member_of(e));
            }
            Request {
                count,
                cpu,
                memory,
                gpus: 0,
                ports: if port { vec![HostPort::tcp(80)] } else { vec![] },
                required_attributes: if needs_type {
                    vec![RequiredAttribute { name: "ecs.instance-type".into(), value: Some("m5.xlarge".into()) }]
                } else {
                    vec![]
                },
                strategies,
                constraints,
                group: GROUP.into(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Feasible at every step (nothing oversubscribed), a best choice at every step (binpack never
    /// takes an emptier instance), and no early give-up.
    #[test]
    fn every_placement_fits_and_is_a_best_choice(instances in cluster(), req in request(), seed in any::<u64>()) {
        let snapshot = Snapshot::new(instances.clone());
        verify(&instances, &req, &place(&snapshot, &req, &Env { seed }).unwrap())?;
        // The full scan alone, which sampling falls back to, follows the same rules.
        verify(&instances, &req, &place_by_scan(&snapshot, &req, &Env { seed }).unwrap())?;
    }

    /// The compiled, column-by-column evaluation (placement, `Snapshot::filter`) agrees with the
    /// plain evaluator on every instance.
    #[test]
    fn compiled_filter_agrees_with_eval(instances in cluster(), which in 0..EXPRESSIONS.len() + FILTERS.len()) {
        let source = EXPRESSIONS.iter().chain(FILTERS).nth(which).unwrap();
        let expr = flotilla_scheduler::parse(source).unwrap();
        let want: Vec<usize> = (0..instances.len()).filter(|i| expr.eval(&instances[*i])).collect();
        prop_assert_eq!(Snapshot::new(instances).filter(&expr), want, "{}", source);
    }

    #[test]
    fn the_same_seed_gives_the_same_plan(instances in cluster(), req in request(), seed in any::<u64>()) {
        let snapshot = Snapshot::new(instances);
        prop_assert_eq!(place(&snapshot, &req, &Env { seed }).unwrap(), place(&snapshot, &req, &Env { seed }).unwrap());
    }

    #[test]
    fn distinct_instance_never_doubles_up(instances in cluster(), mut req in request(), seed in any::<u64>()) {
        req.constraints.push(Constraint::DistinctInstance);
        let plan = place(&Snapshot::new(instances.clone()), &req, &Env { seed }).unwrap();
        let mut seen = std::collections::HashSet::new();
        for p in &plan.placements {
            prop_assert!(seen.insert(p.instance), "two tasks on instance {}", p.instance);
            prop_assert_eq!(instances[p.instance].task_groups[0].1, 0, "instance already ran the group");
        }
    }

    /// With room everywhere, spreading over N zones keeps the zones within one task of each other,
    /// whatever strategies follow.
    #[test]
    fn spread_keeps_zones_within_one(
        zones_of in prop::collection::vec(0usize..5, 1..40),
        tail in prop::collection::vec(strategy(), 0..2),
        count in 1u32..=10,
        seed in any::<u64>(),
    ) {
        let instances: Vec<Instance> =
            zones_of.iter().enumerate().map(|(n, z)| inst(n, &format!("z{z}"), 1 << 20, 1 << 20)).collect();
        let mut req = common::request(count);
        req.strategies = vec![Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into()))];
        req.strategies.extend(tail);
        let snapshot = Snapshot::new(instances);
        for plan in [place(&snapshot, &req, &Env { seed }).unwrap(), place_by_scan(&snapshot, &req, &Env { seed }).unwrap()] {
            prop_assert_eq!(plan.placements.len(), count as usize);
            let mut per_zone = [0i64; 5];
            for p in &plan.placements {
                per_zone[zones_of[p.instance]] += 1;
            }
            let used: Vec<i64> = (0..5).filter(|z| zones_of.contains(z)).map(|z| per_zone[z]).collect();
            prop_assert!(used.iter().max().unwrap() - used.iter().min().unwrap() <= 1, "{:?}", used);
        }
    }
}
