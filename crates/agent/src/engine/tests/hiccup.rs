//! Docker daemon hiccups against the fake runtime: the daemon cut off for a while (every call
//! refused, event streams broken, events of that time lost), single calls refused, and answers
//! lost after the daemon acted. The engine must back off and retry, never create a container
//! twice, keep what it knew while it cannot look, and end with the true state once the daemon is
//! back. The clock is paused, so the waits below cost no real time.

use super::*;

/// The task's latest report.
fn latest(h: &Harness, task: &str) -> TaskReport {
    h.engine.report(task).unwrap_or_else(|| panic!("no report of {task}"))
}

#[tokio::test(start_paused = true)]
async fn a_task_started_while_the_daemon_is_away_backs_off_and_runs_once_it_returns() {
    let mut h = Harness::new();
    let task = arn("t1");
    h.fake.cut();
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let r = latest(&h, &task);
    assert!(matches!(r.status.as_str(), "PROVISIONING" | "PENDING"), "{}", r.status);
    assert!(r.stop_code.is_none() && r.stopped_reason.is_none(), "a hiccup must not fail the task: {r:?}");
    assert_eq!(h.engine.tasks()[0].desired_status, DesiredStatus::Running);
    assert!(h.fake.containers().is_empty());
    // Each attempt looks for the image first; the attempts back off.
    let tries = h.fake.refused("image_present");
    assert!((2..=5).contains(&tries.len()), "{} tries in 10 s", tries.len());
    let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "the retries do not back off: {gaps:?}");

    h.fake.restore();
    let r = h.status(&task, "RUNNING").await;
    assert_eq!(container_report(&r, "web").status, "RUNNING");
    let containers = h.fake.task_containers(&task);
    assert_eq!(containers.len(), 1);
    assert_eq!((containers["web"].state, containers["web"].starts), (RunState::Running, 1));
    assert_eq!(h.created(), 1);
}

#[tokio::test(start_paused = true)]
async fn create_and_start_hiccups_are_retried_without_a_second_container() {
    let mut h = Harness::new();
    let task = arn("t1");
    // The daemon creates the container but the answer is lost; then two starts are refused.
    h.fake.lose_next_answers("create_container", 1);
    h.fake.fail_next("start_container", 2);
    h.engine.apply(assignment("t1", vec![container("web"), non_essential("side")])).unwrap();
    let r = h.status(&task, "RUNNING").await;
    assert_eq!(container_report(&r, "web").status, "RUNNING");
    assert_eq!(h.fake.refused("create_container").len(), 1);
    assert_eq!(h.fake.refused("start_container").len(), 2);
    let containers = h.fake.task_containers(&task);
    assert_eq!(h.fake.containers().len(), 2, "one container per definition");
    // The retried create found the container the lost answer was about.
    assert_eq!(container_report(&r, "web").runtime_id.as_deref(), Some(containers["web"].id.as_str()));
    assert!(containers.values().all(|c| c.state == RunState::Running && c.starts == 1));
}

#[tokio::test(start_paused = true)]
async fn running_tasks_keep_their_state_through_a_hiccup_and_an_exit_during_it_is_reported_after() {
    // Resyncs on a timer would hide a missing retry: only the hiccup's own path may find the exit.
    let mut h = Harness::with(|c| c.resync_interval = Duration::from_secs(100_000));
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    h.engine.apply(assignment("t2", vec![container("web")])).unwrap();
    h.status(&arn("t1"), "RUNNING").await;
    let before = h.status(&arn("t2"), "RUNNING").await;

    h.fake.cut();
    h.fake.exit(&arn("t1"), "web", 7);
    tokio::time::sleep(Duration::from_secs(60)).await;
    for t in ["t1", "t2"] {
        let r = latest(&h, &arn(t));
        assert_eq!(r.status, "RUNNING", "{t} changed while nothing could be known");
        assert_eq!(
            (container_report(&r, "web").status.as_str(), container_report(&r, "web").exit_code),
            ("RUNNING", None)
        );
    }

    h.fake.restore();
    let r = h.status(&arn("t1"), "STOPPED").await;
    assert_eq!(container_report(&r, "web").exit_code, Some(7));
    assert_eq!(r.stop_code.as_deref(), Some("EssentialContainerExited"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let r2 = latest(&h, &arn("t2"));
    assert_eq!(r2.status, "RUNNING");
    assert_eq!(container_report(&r2, "web").runtime_id, container_report(&before, "web").runtime_id);
    assert_eq!(h.fake.task_containers(&arn("t2"))["web"].state, RunState::Running);
}

#[tokio::test(start_paused = true)]
async fn an_exit_event_whose_inspection_fails_is_looked_at_again_soon() {
    let mut h = Harness::with(|c| c.resync_interval = Duration::from_secs(100_000));
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    h.status(&task, "RUNNING").await;
    // Let the log capture settle, so the refusals below meet the engine's inspections.
    tokio::time::sleep(Duration::from_secs(60)).await;
    h.fake.fail_next("inspect_container", 3);
    h.fake.exit(&task, "web", 9);
    let r = tokio::time::timeout(Duration::from_secs(60), h.status(&task, "STOPPED"))
        .await
        .expect("the exit is found long before the next periodic resync");
    assert_eq!(container_report(&r, "web").exit_code, Some(9));
    assert_eq!(h.fake.refused("inspect_container").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_broken_event_stream_is_resubscribed() {
    let mut h = Harness::with(|c| c.resync_interval = Duration::from_secs(100_000));
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    h.status(&task, "RUNNING").await;
    h.fake.break_event_streams();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Only an event can tell the engine now: no resync is due for a long time.
    h.fake.exit(&task, "web", 5);
    let r = tokio::time::timeout(Duration::from_secs(60), h.status(&task, "STOPPED")).await.expect("the exit event");
    assert_eq!(container_report(&r, "web").exit_code, Some(5));
}

#[tokio::test(start_paused = true)]
async fn a_stop_ordered_during_a_hiccup_completes_gracefully_once_the_daemon_returns() {
    let mut h = Harness::new();
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    h.status(&task, "RUNNING").await;

    h.fake.cut();
    h.engine.apply(stopped(assignment("t1", vec![container("web")]))).unwrap();
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_ne!(latest(&h, &task).status, "STOPPED");
    assert_eq!(h.fake.task_containers(&task)["web"].state, RunState::Running);
    let asked = h.fake.refused("stop_container");
    assert!(asked.len() >= 2, "the stop is asked again: {asked:?}");

    h.fake.restore();
    let r = h.status(&task, "STOPPED").await;
    // SIGTERM reached it (exit 0 on SIGTERM); no SIGKILL was needed.
    assert_eq!(container_report(&r, "web").exit_code, Some(0));
    assert!(!h.fake.calls().iter().any(|c| matches!(c, Call::KillContainer(..))), "{:#?}", h.fake.calls());
}

#[tokio::test(start_paused = true)]
async fn an_agent_restarted_while_the_daemon_is_away_keeps_its_tasks_and_cleans_up_later() {
    let tweak = |c: &mut EngineConfig| c.task_cleanup_wait = Duration::from_secs(600);
    let mut h = Harness::with(tweak);
    h.engine.apply(assignment("up", vec![container("web")])).unwrap();
    h.engine.apply(assignment("done", vec![container("web")])).unwrap();
    let up = h.status(&arn("up"), "RUNNING").await;
    h.status(&arn("done"), "RUNNING").await;
    h.engine.apply(stopped(assignment("done", vec![container("web")]))).unwrap();
    h.status(&arn("done"), "STOPPED").await;
    h.engine.shutdown().await;

    h.fake.cut();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut h2 = Harness::on(h.fake.clone(), h.dir.clone(), h.start, tweak);
    assert_eq!(h2.engine.adopt().await.unwrap().len(), 2);
    let r = h2.status(&arn("up"), "RUNNING").await;
    assert_eq!(container_report(&r, "web").runtime_id, container_report(&up, "web").runtime_id);
    assert_eq!(latest(&h2, &arn("done")).status, "STOPPED");
    assert!(h2.engine.reap().await.is_err(), "the reaper cannot list while the daemon is away");
    tokio::time::sleep(Duration::from_secs(30)).await;
    h2.fake.restore();

    // The stopped task is cleaned up on schedule; the running one is untouched.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(h2.fake.task_containers(&arn("done")).is_empty());
    assert_eq!(h2.fake.task_containers(&arn("up"))["web"].state, RunState::Running);
    assert!(h2.engine.reap().await.unwrap().is_empty());
    assert_eq!(latest(&h2, &arn("up")).status, "RUNNING");
    h2.fake.exit(&arn("up"), "web", 2);
    let r = h2.status(&arn("up"), "STOPPED").await;
    assert_eq!(container_report(&r, "web").exit_code, Some(2));
    assert_eq!(h2.created(), 2, "nothing was created again");
}
