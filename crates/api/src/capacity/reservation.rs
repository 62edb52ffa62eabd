//! CapacityProviderReservation, the metric managed scaling tracks, as ECS defines it:
//! `M / N x 100`, where N is the number of hosts the group runs and M the number it needs for
//! the provider's tasks: the hosts that run at least one non-daemon task, plus the empty hosts
//! the waiting (PROVISIONING) tasks would fill, plus the fresh hosts of the group's instance type
//! the rest would need, packed first-fit-decreasing. With no hosts, the metric is 100 when no task
//! waits and 200 when one does. Tasks too large for the instance type are left out, as ECS leaves
//! them out.

/// A registered host of the provider, as the metric sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRoom {
    /// It runs (or is about to run) at least one non-daemon task.
    pub busy: bool,
    /// Whether new tasks may go there (ACTIVE, agent connected).
    pub accepts: bool,
    pub cpu_left: i64,
    pub memory_left: i64,
}

/// What one waiting task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub cpu: i64,
    pub memory: i64,
}

/// The metric's parts for one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Hosts needed (M).
    pub needed: u32,
    /// Hosts the group runs (N).
    pub running: u32,
}

impl Reservation {
    /// CapacityProviderReservation, in percent.
    pub fn percent(&self) -> f64 {
        match (self.needed, self.running) {
            (0, 0) => 100.0,
            (_, 0) => 200.0,
            (m, n) => f64::from(m) * 100.0 / f64::from(n),
        }
    }
}

/// M and N for a provider whose group runs `running` hosts (registered or not), of which
/// `registered` are described, with `waiting` tasks and fresh hosts of `fresh` room.
pub fn measure(running: u32, registered: &[HostRoom], waiting: &[Need], fresh: Need) -> Reservation {
    let busy = registered.iter().filter(|h| h.busy).count() as u32;
    let mut needs: Vec<Need> =
        waiting.iter().copied().filter(|n| n.cpu <= fresh.cpu && n.memory <= fresh.memory).collect();
    needs.sort_by_key(|n| std::cmp::Reverse((n.memory, n.cpu)));
    let mut rooms: Vec<(HostRoom, bool)> = registered.iter().filter(|h| h.accepts).map(|h| (*h, false)).collect();
    let mut fresh_hosts: Vec<Need> = Vec::new();
    for n in needs {
        if let Some((room, used)) = rooms.iter_mut().find(|(r, _)| r.cpu_left >= n.cpu && r.memory_left >= n.memory) {
            room.cpu_left -= n.cpu;
            room.memory_left -= n.memory;
            *used = true;
            continue;
        }
        match fresh_hosts.iter_mut().find(|r| r.cpu >= n.cpu && r.memory >= n.memory) {
            Some(r) => {
                r.cpu -= n.cpu;
                r.memory -= n.memory;
            }
            None => fresh_hosts.push(Need { cpu: fresh.cpu - n.cpu, memory: fresh.memory - n.memory }),
        }
    }
    let filled_empty = rooms.iter().filter(|(r, used)| *used && !r.busy).count() as u32;
    Reservation { needed: busy + filled_empty + fresh_hosts.len() as u32, running }
}

/// The group size target tracking asks for at `target` percent: enough hosts that M / N comes to
/// the target. With no hosts, target tracking counts the group as one host, so the first step
/// out of zero is the metric's 200% of one.
pub fn desired_for(r: Reservation, target: u32) -> u32 {
    let target = f64::from(target.clamp(1, 100));
    if r.running == 0 {
        return if r.needed == 0 { 0 } else { (200.0 / target).ceil() as u32 };
    }
    (f64::from(r.needed) * 100.0 / target).ceil() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const M5: Need = Need { cpu: 2048, memory: 7680 };

    fn host(busy: bool, cpu_left: i64, memory_left: i64) -> HostRoom {
        HostRoom { busy, accepts: true, cpu_left, memory_left }
    }

    #[test]
    fn no_hosts_reads_100_or_200() {
        assert_eq!(measure(0, &[], &[], M5).percent(), 100.0);
        let r = measure(0, &[], &[Need { cpu: 256, memory: 512 }], M5);
        assert_eq!(r.percent(), 200.0);
        assert_eq!(desired_for(r, 100), 2);
    }

    #[test]
    fn waiting_tasks_fill_room_then_fresh_hosts() {
        // Two busy hosts with room for 2 tasks between them, one empty host, 20 tasks of 256/512:
        // 2 on the busy ones, 8 on the empty one, 10 more need 2 fresh m5.large (8 per host).
        let hosts = [host(true, 256, 512), host(true, 256, 512), host(false, 2048, 7680)];
        let waiting = vec![Need { cpu: 256, memory: 512 }; 20];
        let r = measure(3, &hosts, &waiting, M5);
        assert_eq!(r.needed, 2 + 1 + 2);
        assert_eq!(desired_for(r, 100), 5);
        assert_eq!(desired_for(r, 50), 10);
    }

    #[test]
    fn idle_hosts_pull_the_metric_down_and_huge_tasks_are_left_out() {
        let hosts = [host(true, 0, 0), host(false, 2048, 7680), host(false, 2048, 7680), host(false, 2048, 7680)];
        let r = measure(4, &hosts, &[Need { cpu: 4096, memory: 512 }], M5);
        assert_eq!(r.needed, 1);
        assert_eq!(r.percent(), 25.0);
        assert_eq!(desired_for(r, 100), 1);
    }

    #[test]
    fn hosts_still_booting_count_in_n() {
        // Ten tasks wait, two hosts launched but not registered yet: M = 2 fresh, N = 2.
        let r = measure(2, &[], &[Need { cpu: 512, memory: 1024 }; 8], M5);
        assert_eq!(r, Reservation { needed: 2, running: 2 });
        assert_eq!(r.percent(), 100.0);
    }
}
