//! What one group needs now, as a pure function of the group, its hosts, its zones and the time:
//! hosts to launch (the zone with the fewest live hosts first; Spot or on-demand by the
//! group's instances distribution) and hosts to terminate (Spot hosts whose interruption
//! deadline passed; then, above the desired capacity, unprotected hosts by Auto Scaling's
//! default termination policy: the zone with the most live hosts first, the oldest host in it).
//! A group being deleted wants no hosts at all, protected or not.

use std::collections::BTreeMap;

use flotilla_hosts::{AutoScalingGroup, Host, Lifecycle};

/// A host to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchChoice {
    pub zone: String,
    pub spot: bool,
}

/// A host to terminate and why (the activity's Cause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminateChoice {
    pub instance_id: String,
    pub cause: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub launch: Vec<LaunchChoice>,
    pub terminate: Vec<TerminateChoice>,
}

/// Whether a host counts toward the group's capacity.
pub fn is_live(h: &Host) -> bool {
    matches!(h.lifecycle, Lifecycle::Pending | Lifecycle::InService)
}

/// Whether a Spot host's interruption deadline has passed.
pub fn interrupted(h: &Host, now_ms: i64) -> bool {
    h.interruption.as_ref().is_some_and(|i| i.deadline_ms <= now_ms)
}

/// The capacity the group wants now.
pub fn wanted(group: &AutoScalingGroup) -> u32 {
    if group.is_deleting() {
        0
    } else {
        group.desired_capacity
    }
}

/// Decides for `group`, whose hosts are `hosts` (any lifecycle), over `zones` in order.
pub fn decide(group: &AutoScalingGroup, hosts: &[&Host], zones: &[String], now_ms: i64) -> Plan {
    let mut plan = Plan::default();
    let mut live: Vec<&Host> = Vec::new();
    for h in hosts.iter().copied().filter(|h| is_live(h)) {
        if interrupted(h, now_ms) {
            plan.terminate.push(TerminateChoice {
                instance_id: h.instance_id.clone(),
                cause: format!(
                    "At {} an instance was taken out of service in response to an EC2 Spot instance interruption notice.",
                    crate::groups::activities::rfc3339(now_ms)
                ),
            });
        } else {
            live.push(h);
        }
    }
    let want = wanted(group) as usize;
    if live.len() < want {
        let mut per_zone: BTreeMap<&str, usize> = zones.iter().map(|z| (z.as_str(), 0)).collect();
        for h in &live {
            if let Some(n) = per_zone.get_mut(h.availability_zone.as_str()) {
                *n += 1;
            }
        }
        let mut spot = live.iter().filter(|h| h.spot).count() as u32;
        let mut on_demand = live.len() as u32 - spot;
        let distribution = group.mixed_instances_policy.as_ref().map(|m| &m.distribution);
        for _ in live.len()..want {
            // Fewest hosts first; ties go to the zone listed first.
            let Some(zone) = zones.iter().min_by_key(|z| per_zone.get(z.as_str()).copied().unwrap_or(0)) else {
                break;
            };
            *per_zone.entry(zone.as_str()).or_default() += 1;
            let is_spot = distribution.is_some_and(|d| d.next_is_spot(on_demand, spot));
            if is_spot {
                spot += 1;
            } else {
                on_demand += 1;
            }
            plan.launch.push(LaunchChoice { zone: zone.clone(), spot: is_spot });
        }
    } else if live.len() > want {
        let cause = if group.is_deleting() {
            "an instance was taken out of service in response to a user request to delete the group.".to_string()
        } else {
            format!(
                "a user request set the group's desired capacity to {want}, so an instance was taken out of service to match it."
            )
        };
        let mut remaining = live.clone();
        for _ in want..live.len() {
            let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
            for h in &remaining {
                *per_zone.entry(h.availability_zone.as_str()).or_default() += 1;
            }
            // The zone with the most hosts that has one to give; then its oldest host.
            let pick = remaining
                .iter()
                .copied()
                .filter(|h| group.is_deleting() || !h.protected_from_scale_in)
                .max_by(|a, b| {
                    let (za, zb) = (per_zone[a.availability_zone.as_str()], per_zone[b.availability_zone.as_str()]);
                    za.cmp(&zb)
                        .then(b.availability_zone.cmp(&a.availability_zone))
                        .then(b.launched_at_ms.cmp(&a.launched_at_ms))
                        .then(b.instance_id.cmp(&a.instance_id))
                })
                .map(|h| h.instance_id.clone());
            let Some(id) = pick else { break };
            remaining.retain(|h| h.instance_id != id);
            plan.terminate.push(TerminateChoice {
                instance_id: id,
                cause: format!("At {} {cause}", crate::groups::activities::rfc3339(now_ms)),
            });
        }
    }
    plan
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flotilla_hosts::{InstancesDistribution, Interruption, LaunchTemplateRef, MixedInstancesPolicy};

    fn group(desired: u32) -> AutoScalingGroup {
        AutoScalingGroup {
            name: "g".into(),
            arn: "arn".into(),
            created_at_ms: 0,
            launch_template: Some(LaunchTemplateRef { id: "lt-1".into(), name: "t".into(), version: None }),
            mixed_instances_policy: None,
            min_size: 0,
            max_size: 100,
            desired_capacity: desired,
            subnet_ids: vec![],
            availability_zones: zones(),
            new_instances_protected_from_scale_in: false,
            default_cooldown: 300,
            health_check_type: "EC2".into(),
            health_check_grace_period: 0,
            capacity_rebalance: false,
            tags: vec![],
            status: None,
            policies: vec![],
        }
    }

    fn zones() -> Vec<String> {
        vec!["us-east-1a".into(), "us-east-1b".into(), "us-east-1c".into()]
    }

    pub(crate) fn host(id: &str, zone: &str, launched: i64) -> Host {
        Host {
            instance_id: id.into(),
            group: Some("g".into()),
            instance_type: "m5.large".into(),
            availability_zone: zone.into(),
            subnet_id: "subnet".into(),
            private_ip: "172.31.0.4".into(),
            spot: false,
            lifecycle: Lifecycle::InService,
            health: "Healthy".into(),
            protected_from_scale_in: false,
            launched_at_ms: launched,
            terminated_at_ms: None,
            launch_template: None,
            cluster: "default".into(),
            provisioner_handle: None,
            interruption: None,
            tags: vec![],
            spot_instance_draining: false,
            drain_started_at_ms: None,
            termination_cause: None,
        }
    }

    fn zones_of(p: &Plan) -> Vec<&str> {
        p.launch.iter().map(|l| &l.zone[9..]).collect()
    }

    #[test]
    fn launches_balance_the_zones() {
        let p = decide(&group(5), &[], &zones(), 0);
        assert_eq!(zones_of(&p), ["a", "b", "c", "a", "b"]);
        let a = host("i-1", "us-east-1a", 0);
        let b = host("i-2", "us-east-1a", 0);
        let p = decide(&group(4), &[&a, &b], &zones(), 0);
        assert_eq!(zones_of(&p), ["b", "c"]);
        assert!(p.terminate.is_empty());
    }

    #[test]
    fn the_distribution_splits_spot_and_on_demand() {
        let mut g = group(4);
        g.mixed_instances_policy = Some(MixedInstancesPolicy {
            launch_template: g.launch_template.take().unwrap(),
            instance_types: vec![],
            distribution: InstancesDistribution {
                on_demand_base_capacity: 1,
                on_demand_percentage_above_base_capacity: 0,
                ..Default::default()
            },
        });
        let p = decide(&g, &[], &zones(), 0);
        assert_eq!(p.launch.iter().map(|l| l.spot).collect::<Vec<_>>(), [false, true, true, true]);
        // Plain groups are on-demand.
        assert!(decide(&group(2), &[], &zones(), 0).launch.iter().all(|l| !l.spot));
    }

    #[test]
    fn scale_in_takes_the_busiest_zone_then_the_oldest_and_spares_protected_hosts() {
        let a1 = host("i-a1", "us-east-1a", 10);
        let a2 = host("i-a2", "us-east-1a", 5);
        let b1 = host("i-b1", "us-east-1b", 1);
        let mut a3 = host("i-a3", "us-east-1a", 1);
        a3.protected_from_scale_in = true;
        let all = [&a1, &a2, &b1, &a3];
        let p = decide(&group(2), &all, &zones(), 0);
        let ids: Vec<&str> = p.terminate.iter().map(|t| t.instance_id.as_str()).collect();
        // Zone a has 3: its oldest unprotected (a2) goes; then a and b tie at 2 and 1... a still
        // has the most, so a1 goes.
        assert_eq!(ids, ["i-a2", "i-a1"]);
        // Everything protected: nothing to take.
        let mut p1 = host("i-p", "us-east-1a", 0);
        p1.protected_from_scale_in = true;
        assert!(decide(&group(0), &[&p1], &zones(), 0).terminate.is_empty());
    }

    #[test]
    fn a_group_being_deleted_terminates_everything_even_protected() {
        let mut g = group(3);
        g.status = Some("Delete in progress".into());
        let mut p1 = host("i-p", "us-east-1a", 0);
        p1.protected_from_scale_in = true;
        let h2 = host("i-2", "us-east-1b", 0);
        let mut gone = host("i-3", "us-east-1b", 0);
        gone.lifecycle = Lifecycle::Terminated;
        let p = decide(&g, &[&p1, &h2, &gone], &zones(), 0);
        assert!(p.launch.is_empty());
        assert_eq!(p.terminate.len(), 2);
        assert!(p.terminate[0].cause.contains("delete the group"));
    }

    #[test]
    fn a_passed_spot_deadline_terminates_and_is_replaced() {
        let mut s = host("i-s", "us-east-1a", 0);
        s.spot = true;
        s.interruption = Some(Interruption { action: "terminate".into(), noticed_at_ms: 0, deadline_ms: 120_000 });
        let before = decide(&group(1), &[&s], &zones(), 119_999);
        assert_eq!(before, Plan::default());
        let after = decide(&group(1), &[&s], &zones(), 120_000);
        assert_eq!(after.terminate[0].instance_id, "i-s");
        assert!(after.terminate[0].cause.contains("Spot"));
        assert_eq!(after.launch.len(), 1, "a replacement is launched at once");
    }

    #[test]
    fn hosts_on_their_way_out_do_not_count() {
        let mut t = host("i-t", "us-east-1a", 0);
        t.lifecycle = Lifecycle::Terminating;
        let p = decide(&group(1), &[&t], &zones(), 0);
        assert_eq!(p.launch.len(), 1);
        assert!(p.terminate.is_empty());
    }
}
