//! Container ordering within a task: when a container may start (its `dependsOn` conditions and
//! its `links`), in which order containers are created, and when one may be stopped (once nothing
//! still running depends on it, so shutdown is the reverse of startup).
//!
//! Pure functions over small views of container state, so the rules are tested as data.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_model::ContainerDefinition;

use super::status::{ContainerStatus, HealthStatus};

/// A `dependsOn` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The dependency has been started.
    Start,
    /// The dependency ran and exited, with any code.
    Complete,
    /// The dependency ran and exited with code 0.
    Success,
    /// The dependency's health check passes.
    Healthy,
}

impl Condition {
    pub fn parse(s: &str) -> Option<Condition> {
        match s {
            "START" => Some(Condition::Start),
            "COMPLETE" => Some(Condition::Complete),
            "SUCCESS" => Some(Condition::Success),
            "HEALTHY" => Some(Condition::Healthy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Start => "START",
            Condition::Complete => "COMPLETE",
            Condition::Success => "SUCCESS",
            Condition::Healthy => "HEALTHY",
        }
    }
}

/// One dependency of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub on: String,
    pub condition: Condition,
}

/// What ordering needs to know about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub status: ContainerStatus,
    /// Whether it was ever started (a stopped container may never have run).
    pub started: bool,
    pub exit_code: Option<i32>,
    pub health: Option<HealthStatus>,
}

/// Whether a container may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Waiting,
    /// A dependency can never be met; the message says which and why.
    Blocked(String),
}

/// The dependencies of a container: its `dependsOn`, plus START on every container it links to
/// (Docker needs a link's target running).
pub fn dependencies(def: &ContainerDefinition) -> Vec<Dependency> {
    let mut deps: Vec<Dependency> = def
        .depends_on
        .iter()
        .flatten()
        .filter_map(|d| {
            Some(Dependency { on: d.container_name.clone()?, condition: Condition::parse(d.condition.as_deref()?)? })
        })
        .collect();
    for link in def.links.iter().flatten() {
        let target = link.split(':').next().unwrap_or(link).to_string();
        if !deps.iter().any(|d| d.on == target) {
            deps.push(Dependency { on: target, condition: Condition::Start });
        }
    }
    deps
}

/// Whether one condition holds for its target.
fn condition_state(dep: &Dependency, target: Option<&View>) -> Readiness {
    let Some(t) = target else {
        return Readiness::Blocked(format!("dependency {} is not a container of this task", dep.on));
    };
    let exited = t.status == ContainerStatus::Stopped;
    let never_ran = exited && !t.started;
    if never_ran {
        return Readiness::Blocked(format!("dependency {} stopped without running", dep.on));
    }
    match dep.condition {
        Condition::Start if t.started => Readiness::Ready,
        Condition::Complete if exited => Readiness::Ready,
        Condition::Success if exited => match t.exit_code {
            Some(0) => Readiness::Ready,
            code => Readiness::Blocked(format!(
                "dependency {} exited with code {} but condition SUCCESS needs 0",
                dep.on,
                code.map_or("unknown".to_string(), |c| c.to_string())
            )),
        },
        Condition::Healthy if t.health == Some(HealthStatus::Healthy) && !exited => Readiness::Ready,
        Condition::Healthy if exited => {
            Readiness::Blocked(format!("dependency {} exited before becoming HEALTHY", dep.on))
        }
        Condition::Start | Condition::Complete | Condition::Success | Condition::Healthy => Readiness::Waiting,
    }
}

/// Whether a container with these dependencies may start, given every container's view.
pub fn readiness(deps: &[Dependency], views: &BTreeMap<String, View>) -> Readiness {
    let mut waiting = false;
    for dep in deps {
        match condition_state(dep, views.get(&dep.on)) {
            Readiness::Ready => {}
            Readiness::Waiting => waiting = true,
            blocked @ Readiness::Blocked(_) => return blocked,
        }
    }
    if waiting {
        Readiness::Waiting
    } else {
        Readiness::Ready
    }
}

/// How long a container's dependents wait for it to reach a COMPLETE, SUCCESS or HEALTHY
/// condition when its definition sets no `startTimeout`: the Linux default of the ECS agent's
/// `ECS_CONTAINER_START_TIMEOUT`, which ECS documents as the EC2 default.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);

/// A container's `startTimeout`, or the default.
pub fn start_timeout(def: &ContainerDefinition) -> Duration {
    def.start_timeout.and_then(|s| u64::try_from(s).ok()).map_or(DEFAULT_START_TIMEOUT, Duration::from_secs)
}

/// When a dependency target last started (engine clock, epoch ms) and its `startTimeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub started_ms: Option<i64>,
    pub timeout: Duration,
}

/// The first dependency still waited for whose target ran out of its `startTimeout`, as the
/// reason the dependent gives up. As in the ECS agent, the time counts from the target's start,
/// and only for the conditions that need more than a start (COMPLETE, SUCCESS, HEALTHY): a START
/// condition holds as soon as the target starts.
pub fn timed_out(
    deps: &[Dependency],
    views: &BTreeMap<String, View>,
    deadlines: &BTreeMap<String, Deadline>,
    now_ms: i64,
) -> Option<String> {
    deps.iter().find_map(|dep| {
        if dep.condition == Condition::Start || condition_state(dep, views.get(&dep.on)) != Readiness::Waiting {
            return None;
        }
        let d = deadlines.get(&dep.on)?;
        let started = d.started_ms?;
        let limit = i64::try_from(d.timeout.as_millis()).unwrap_or(i64::MAX);
        (now_ms.saturating_sub(started) >= limit).then(|| {
            format!(
                "dependency {} did not reach {} within its startTimeout of {} seconds",
                dep.on,
                dep.condition.as_str(),
                d.timeout.as_secs()
            )
        })
    })
}

/// Whether `name` may be stopped now: no container that depends on it is still live (created or
/// running), so dependents stop before what they depend on.
pub fn may_stop(name: &str, deps: &BTreeMap<String, Vec<Dependency>>, views: &BTreeMap<String, View>) -> bool {
    deps.iter().filter(|(dependent, _)| dependent.as_str() != name).all(|(dependent, ds)| {
        let depends = ds.iter().any(|d| d.on == name);
        let live = views.get(dependent).is_some_and(|v| v.status == ContainerStatus::Running);
        !(depends && live)
    })
}

/// The order to create containers in: a container after the ones it links to, since Docker
/// resolves links at creation. Ties keep definition order; a cycle (refused at registration)
/// falls back to definition order for what remains.
pub fn creation_order(names: &[String], deps: &BTreeMap<String, Vec<Dependency>>) -> Vec<String> {
    let mut done: Vec<String> = Vec::with_capacity(names.len());
    let mut left: Vec<&String> = names.iter().collect();
    while !left.is_empty() {
        let pos = left.iter().position(|n| {
            deps.get(n.as_str())
                .into_iter()
                .flatten()
                .filter(|d| d.condition == Condition::Start)
                .all(|d| done.contains(&d.on) || !names.contains(&d.on))
        });
        let idx = pos.unwrap_or(0);
        done.push(left.remove(idx).clone());
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::ContainerDependency;

    fn view(status: ContainerStatus, started: bool, exit: Option<i32>, health: Option<HealthStatus>) -> View {
        View { status, started, exit_code: exit, health }
    }

    fn dep(on: &str, c: Condition) -> Dependency {
        Dependency { on: on.into(), condition: c }
    }

    fn views(entries: &[(&str, View)]) -> BTreeMap<String, View> {
        entries.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    #[test]
    fn start_waits_for_the_dependency_to_start() {
        let deps = [dep("db", Condition::Start)];
        let created = views(&[("db", view(ContainerStatus::Created, false, None, None))]);
        assert_eq!(readiness(&deps, &created), Readiness::Waiting);
        let running = views(&[("db", view(ContainerStatus::Running, true, None, None))]);
        assert_eq!(readiness(&deps, &running), Readiness::Ready);
        let exited = views(&[("db", view(ContainerStatus::Stopped, true, Some(1), None))]);
        assert_eq!(readiness(&deps, &exited), Readiness::Ready);
    }

    #[test]
    fn complete_and_success_wait_for_the_exit_and_success_checks_the_code() {
        let running = views(&[("init", view(ContainerStatus::Running, true, None, None))]);
        let ok = views(&[("init", view(ContainerStatus::Stopped, true, Some(0), None))]);
        let failed = views(&[("init", view(ContainerStatus::Stopped, true, Some(2), None))]);
        assert_eq!(readiness(&[dep("init", Condition::Complete)], &running), Readiness::Waiting);
        assert_eq!(readiness(&[dep("init", Condition::Complete)], &failed), Readiness::Ready);
        assert_eq!(readiness(&[dep("init", Condition::Success)], &running), Readiness::Waiting);
        assert_eq!(readiness(&[dep("init", Condition::Success)], &ok), Readiness::Ready);
        match readiness(&[dep("init", Condition::Success)], &failed) {
            Readiness::Blocked(m) => assert!(m.contains("exited with code 2"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn healthy_waits_for_health_and_fails_if_the_dependency_exits() {
        let deps = [dep("db", Condition::Healthy)];
        let starting = views(&[("db", view(ContainerStatus::Running, true, None, Some(HealthStatus::Unknown)))]);
        let unhealthy = views(&[("db", view(ContainerStatus::Running, true, None, Some(HealthStatus::Unhealthy)))]);
        let healthy = views(&[("db", view(ContainerStatus::Running, true, None, Some(HealthStatus::Healthy)))]);
        let exited = views(&[("db", view(ContainerStatus::Stopped, true, Some(0), Some(HealthStatus::Healthy)))]);
        assert_eq!(readiness(&deps, &starting), Readiness::Waiting);
        // Docker may turn an unhealthy container healthy again, so this still waits.
        assert_eq!(readiness(&deps, &unhealthy), Readiness::Waiting);
        assert_eq!(readiness(&deps, &healthy), Readiness::Ready);
        assert!(matches!(readiness(&deps, &exited), Readiness::Blocked(_)));
    }

    #[test]
    fn a_dependency_that_never_ran_blocks() {
        let deps = [dep("db", Condition::Start)];
        let never = views(&[("db", view(ContainerStatus::Stopped, false, None, None))]);
        assert!(matches!(readiness(&deps, &never), Readiness::Blocked(_)));
        assert!(matches!(readiness(&deps, &BTreeMap::new()), Readiness::Blocked(_)));
    }

    #[test]
    fn a_dependency_times_out_from_its_start_for_conditions_beyond_start() {
        let t0 = 1_000_000;
        let deadline = |started: Option<i64>| {
            BTreeMap::from([("db".to_string(), Deadline { started_ms: started, timeout: Duration::from_secs(30) })])
        };
        let running = views(&[("db", view(ContainerStatus::Running, true, None, Some(HealthStatus::Unknown)))]);
        let healthy = views(&[("db", view(ContainerStatus::Running, true, None, Some(HealthStatus::Healthy)))]);
        let created = views(&[("db", view(ContainerStatus::Created, false, None, None))]);
        // (condition, the target's view, when it started, now, whether it timed out)
        type Case<'a> = (Condition, &'a BTreeMap<String, View>, Option<i64>, i64, bool);
        let cases: Vec<Case<'_>> = vec![
            (Condition::Healthy, &running, Some(t0), t0 + 29_999, false),
            (Condition::Healthy, &running, Some(t0), t0 + 30_000, true),
            (Condition::Complete, &running, Some(t0), t0 + 60_000, true),
            (Condition::Success, &running, Some(t0), t0 + 60_000, true),
            // Met conditions and START never time out; nor does a target not yet started.
            (Condition::Healthy, &healthy, Some(t0), t0 + 60_000, false),
            (Condition::Start, &created, Some(t0), t0 + 60_000, false),
            (Condition::Healthy, &created, None, t0 + 60_000, false),
        ];
        for (condition, views, started, now, expired) in cases {
            let got = timed_out(&[dep("db", condition)], views, &deadline(started), now);
            assert_eq!(got.is_some(), expired, "{condition:?} {started:?} {now}: {got:?}");
        }
        let why = timed_out(&[dep("db", Condition::Healthy)], &running, &deadline(Some(t0)), t0 + 30_000);
        assert_eq!(why.as_deref(), Some("dependency db did not reach HEALTHY within its startTimeout of 30 seconds"));
    }

    #[test]
    fn start_timeout_defaults_to_the_agents() {
        let mut def = ContainerDefinition::default();
        assert_eq!(start_timeout(&def), DEFAULT_START_TIMEOUT);
        def.start_timeout = Some(45);
        assert_eq!(start_timeout(&def), Duration::from_secs(45));
    }

    #[test]
    fn links_imply_a_start_dependency() {
        let def = ContainerDefinition {
            name: Some("web".into()),
            links: Some(vec!["db:database".into()]),
            depends_on: Some(vec![ContainerDependency {
                container_name: Some("init".into()),
                condition: Some("SUCCESS".into()),
            }]),
            ..Default::default()
        };
        assert_eq!(dependencies(&def), vec![dep("init", Condition::Success), dep("db", Condition::Start)]);
    }

    #[test]
    fn dependents_stop_first() {
        let deps =
            BTreeMap::from([("web".to_string(), vec![dep("db", Condition::Healthy)]), ("db".to_string(), vec![])]);
        let both = views(&[
            ("web", view(ContainerStatus::Running, true, None, None)),
            ("db", view(ContainerStatus::Running, true, None, None)),
        ]);
        assert!(may_stop("web", &deps, &both));
        assert!(!may_stop("db", &deps, &both));
        let web_gone = views(&[
            ("web", view(ContainerStatus::Stopped, true, Some(0), None)),
            ("db", view(ContainerStatus::Running, true, None, None)),
        ]);
        assert!(may_stop("db", &deps, &web_gone));
    }

    #[test]
    fn linked_containers_are_created_first() {
        let names: Vec<String> = ["web", "cache", "db"].iter().map(|s| s.to_string()).collect();
        let deps = BTreeMap::from([
            ("web".to_string(), vec![dep("db", Condition::Start), dep("cache", Condition::Start)]),
            ("cache".to_string(), vec![dep("db", Condition::Start)]),
        ]);
        assert_eq!(creation_order(&names, &deps), vec!["db", "cache", "web"]);
        let cyclic = BTreeMap::from([
            ("a".to_string(), vec![dep("b", Condition::Start)]),
            ("b".to_string(), vec![dep("a", Condition::Start)]),
        ]);
        let ab: Vec<String> = vec!["a".into(), "b".into()];
        assert_eq!(creation_order(&ab, &cyclic), vec!["a", "b"]);
    }
}
