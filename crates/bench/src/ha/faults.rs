//! The faults, one at a time on a running [`Bed`] under load, and what each measured: the time to
//! a new leader, the time until the service (scaled up at the moment of the fault, so only a
//! working leader can bring it back) runs its new desired count, and, where agents lost their
//! server, the time until every agent is connected again. After each fault the bed is mended
//! (the killed process started again) for the next.

use std::time::{Duration, Instant};

use serde_json::json;

use super::bed::{Bed, SERVICE};

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the leading server.
    KillLeader,
    /// SIGSTOP the leading server past its lease, then SIGCONT it.
    PauseLeader,
    /// SIGKILL one etcd member.
    KillEtcdMember,
    /// SIGKILL a server that does not lead (and holds agent sessions).
    KillFollower,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill -9 the leader server",
            Fault::PauseLeader => "SIGSTOP the leader past its lease",
            Fault::KillEtcdMember => "kill -9 one etcd member",
            Fault::KillFollower => "kill -9 a non-leader server",
        }
    }
}

/// What one fault measured.
#[derive(Debug, Clone)]
pub struct FaultReport {
    pub fault: Fault,
    /// Time from the fault until another server led (faults that take the leader away).
    pub new_leader: Option<Duration>,
    /// Time from the fault until the service ran its new desired count.
    pub service_recovered: Duration,
    /// Time from the fault until every agent was connected again (when agents lost their server).
    pub agents_back: Option<Duration>,
    /// After SIGCONT: how long the paused server took to say it no longer leads.
    pub stale_leader_stepped_down: Option<Duration>,
    /// Agent sessions the killed server held.
    pub sessions_lost: u64,
}

/// How long a paused leader stays stopped: past a 3 s lease with room to spare.
pub const PAUSE: Duration = Duration::from_secs(6);

async fn current_leader(bed: &Bed) -> anyhow::Result<usize> {
    let started = Instant::now();
    loop {
        if let Some(i) = bed.cp.leader().await {
            return Ok(i);
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "no server leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Injects `fault`, measures, and mends the bed.
pub async fn inject(bed: &mut Bed, fault: Fault) -> anyhow::Result<FaultReport> {
    let leader = current_leader(bed).await?;
    let (desired, _, _) = bed.service_counts().await?;
    let desired = desired as u32 + 2;
    let mut report = FaultReport {
        fault,
        new_leader: None,
        service_recovered: Duration::ZERO,
        agents_back: None,
        stale_leader_stepped_down: None,
        sessions_lost: 0,
    };
    let t0 = Instant::now();
    let mut killed_server = None;
    let mut killed_member = None;
    match fault {
        Fault::KillLeader => {
            report.sessions_lost = bed.cp.health(leader).await.map_or(0, |h| h.sessions);
            bed.cp.kill(leader);
            killed_server = Some(leader);
        }
        Fault::PauseLeader => {
            if let Some(pid) = bed.cp.pid(leader) {
                super::signal(pid, "STOP");
            }
        }
        Fault::KillEtcdMember => {
            bed.etcd.kill(0);
            killed_member = Some(0);
        }
        Fault::KillFollower => {
            // The follower holding the most agent sessions.
            let mut follower = (0..bed.cp.slots.len()).find(|&i| i != leader).expect("three servers");
            let mut most = 0;
            for i in (0..bed.cp.slots.len()).filter(|&i| i != leader) {
                let held = bed.cp.health(i).await.map_or(0, |h| h.sessions);
                if held > most {
                    (follower, most) = (i, held);
                }
            }
            report.sessions_lost = most;
            bed.cp.kill(follower);
            killed_server = Some(follower);
        }
    }
    // The scale-up only a leader's controller carries out.
    bed.client.ok("UpdateService", &json!({"service": SERVICE, "desiredCount": desired})).await?;
    if matches!(fault, Fault::KillLeader | Fault::PauseLeader) {
        let (_, took) = bed.cp.await_leader(Some(leader), t0, Duration::from_secs(30)).await?;
        report.new_leader = Some(took);
    }
    let agents = async {
        match killed_server {
            Some(_) => bed.await_sessions(t0, Duration::from_secs(60)).await.map(Some),
            None => Ok(None),
        }
    };
    let (service, agents) = tokio::join!(bed.await_service(desired, t0, Duration::from_secs(60)), agents);
    report.service_recovered = service?;
    report.agents_back = agents?;
    if fault == Fault::PauseLeader {
        tokio::time::sleep(PAUSE.saturating_sub(t0.elapsed())).await;
        if let Some(pid) = bed.cp.pid(leader) {
            super::signal(pid, "CONT");
        }
        let resumed = Instant::now();
        loop {
            if bed.cp.health(leader).await.is_some_and(|h| !h.leader) {
                report.stale_leader_stepped_down = Some(resumed.elapsed());
                break;
            }
            anyhow::ensure!(resumed.elapsed() < Duration::from_secs(15), "the resumed server still says it leads");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    if let Some(i) = killed_server {
        bed.cp.restart(i).await?;
    }
    if let Some(i) = killed_member {
        bed.etcd.restart(i).await?;
    }
    Ok(report)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// The reports as a table.
pub fn render(reports: &[FaultReport]) -> String {
    let mut out = String::from(
        "| fault | new leader | service at desired | sessions lost | agents reconnected | paused leader stepped down |\n|---|---|---|---|---|---|\n",
    );
    for r in reports {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.fault.name(),
            secs(r.new_leader),
            secs(Some(r.service_recovered)),
            r.sessions_lost,
            secs(r.agents_back),
            secs(r.stale_leader_stepped_down)
        ));
    }
    out
}
