//! Registered targets over the real wire: RegisterTargets and DeregisterTargets write
//! `flotilla_endpoints::elb::Target` records (deregistering starts draining for the group's
//! delay), and DescribeTargetHealth reports `unused` while no listener uses the group, `initial`
//! until the data plane reports, what the data plane wrote under `keys::target_health` once it
//! has, and `draining` then `unused` after deregistration.

mod common;

use common::Server;
use flotilla_endpoints::elb::{HealthState, Registration, Target, TargetHealth};
use flotilla_endpoints::keys;

fn id_of(arn: &str) -> String {
    arn.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_health_follows_registration_use_and_reports() {
    let s = Server::start().await;
    let tg = s.target_group("svc", "HTTP", "ip").await;
    let tg_id = id_of(&tg);
    s.call(
        "RegisterTargets",
        &[
            ("TargetGroupArn", &tg),
            ("Targets.member.1.Id", "10.0.0.5"),
            ("Targets.member.2.Id", "10.0.0.6"),
            ("Targets.member.2.Port", "8080"),
        ],
    )
    .await
    .ok();
    let t: Target = s.get(&keys::target(&tg_id, "10.0.0.5", 80)).await.expect("target record");
    assert_eq!(t.registration, Registration::Registered);
    assert!(s.get::<Target>(&keys::target(&tg_id, "10.0.0.6", 8080)).await.is_some());

    // No listener uses the group yet.
    let h = s.call("DescribeTargetHealth", &[("TargetGroupArn", &tg)]).await.ok();
    assert_eq!(h.all("State"), ["unused", "unused"]);
    assert_eq!(h.all("Reason"), ["Target.NotInUse", "Target.NotInUse"]);

    let lb = s.alb("front").await;
    s.forward_listener(&lb, "HTTP", "80", &tg).await;
    let h = s.call("DescribeTargetHealth", &[("TargetGroupArn", &tg)]).await.ok();
    assert_eq!(h.all("State"), ["initial", "initial"]);
    assert_eq!(h.all("Reason"), ["Elb.RegistrationInProgress", "Elb.RegistrationInProgress"]);
    assert_eq!(h.all("HealthCheckPort"), ["80", "8080"]);

    // What the data plane reports is what Describe answers.
    let report = |state| TargetHealth { state, reason: None, description: None, updated_at_ms: 1 };
    s.put(&keys::target_health(&tg_id, "10.0.0.5", 80), &report(HealthState::Healthy)).await;
    let unhealthy = TargetHealth {
        state: HealthState::Unhealthy,
        reason: Some("Target.ResponseCodeMismatch".into()),
        description: Some("Health checks failed with these codes: [503]".into()),
        updated_at_ms: 1,
    };
    s.put(&keys::target_health(&tg_id, "10.0.0.6", 8080), &unhealthy).await;
    let h = s.call("DescribeTargetHealth", &[("TargetGroupArn", &tg)]).await.ok();
    assert_eq!(h.all("State"), ["healthy", "unhealthy"]);
    assert_eq!(h.all("Description"), ["Health checks failed with these codes: [503]"]);
    let one =
        s.call("DescribeTargetHealth", &[("TargetGroupArn", &tg), ("Targets.member.1.Id", "10.0.0.5")]).await.ok();
    assert_eq!(one.all("State"), ["healthy"]);
    let stranger =
        s.call("DescribeTargetHealth", &[("TargetGroupArn", &tg), ("Targets.member.1.Id", "10.9.9.9")]).await.ok();
    assert_eq!((stranger.one("State"), stranger.one("Reason")), ("unused".into(), "Target.NotRegistered".into()));

    // Deregistering drains for the group's delay.
    s.call("DeregisterTargets", &[("TargetGroupArn", &tg), ("Targets.member.1.Id", "10.0.0.5")]).await.ok();
    let t: Target = s.get(&keys::target(&tg_id, "10.0.0.5", 80)).await.expect("still there while draining");
    let Registration::Draining { since_ms, until_ms } = t.registration else { panic!("not draining: {t:?}") };
    assert_eq!(until_ms - since_ms, 300_000);
    let h = s.call("DescribeTargetHealth", &[("TargetGroupArn", &tg), ("Targets.member.1.Id", "10.0.0.5")]).await.ok();
    assert_eq!((h.one("State"), h.one("Reason")), ("draining".into(), "Target.DeregistrationInProgress".into()));
    // Registered again while draining: back in service.
    s.call("RegisterTargets", &[("TargetGroupArn", &tg), ("Targets.member.1.Id", "10.0.0.5")]).await.ok();
    let t: Target = s.get(&keys::target(&tg_id, "10.0.0.5", 80)).await.unwrap();
    assert_eq!(t.registration, Registration::Registered);

    // With no delay, deregistration is immediate.
    s.call(
        "ModifyTargetGroupAttributes",
        &[
            ("TargetGroupArn", &tg),
            ("Attributes.member.1.Key", "deregistration_delay.timeout_seconds"),
            ("Attributes.member.1.Value", "0"),
        ],
    )
    .await
    .ok();
    s.call(
        "DeregisterTargets",
        &[("TargetGroupArn", &tg), ("Targets.member.1.Id", "10.0.0.6"), ("Targets.member.1.Port", "8080")],
    )
    .await
    .ok();
    assert!(s.get::<Target>(&keys::target(&tg_id, "10.0.0.6", 8080)).await.is_none());
    let h = s
        .call(
            "DescribeTargetHealth",
            &[("TargetGroupArn", &tg), ("Targets.member.1.Id", "10.0.0.6"), ("Targets.member.1.Port", "8080")],
        )
        .await
        .ok();
    assert_eq!((h.one("State"), h.one("Reason")), ("unused".into(), "Target.NotRegistered".into()));
    // Deregistering what is not registered succeeds.
    s.call("DeregisterTargets", &[("TargetGroupArn", &tg), ("Targets.member.1.Id", "10.1.1.1")]).await.ok();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_must_match_the_group_type() {
    let s = Server::start().await;
    let ip = s.target_group("ips", "HTTP", "ip").await;
    let inst = s.target_group("instances", "TCP", "instance").await;
    let reg = |tg: &str, id: &str| {
        let (tg, id) = (tg.to_string(), id.to_string());
        let s = &s;
        async move { s.call("RegisterTargets", &[("TargetGroupArn", &tg), ("Targets.member.1.Id", &id)]).await }
    };
    assert_eq!(reg(&ip, "i-0123456789abcdef0").await.code(), "InvalidTarget");
    assert_eq!(reg(&ip, "10.0.0.300").await.code(), "InvalidTarget");
    assert_eq!(reg(&inst, "10.0.0.1").await.code(), "InvalidTarget");
    reg(&inst, "i-0123456789abcdef0").await.ok();
    let bad_port = s
        .call(
            "RegisterTargets",
            &[("TargetGroupArn", &ip), ("Targets.member.1.Id", "10.0.0.1"), ("Targets.member.1.Port", "70000")],
        )
        .await;
    assert_eq!(bad_port.code(), "ValidationError");
    let none = s.call("RegisterTargets", &[("TargetGroupArn", &ip)]).await;
    assert_eq!(none.code(), "ValidationError");
    let ghost = ip.replace(&id_of(&ip), "0000000000000000");
    assert_eq!(reg(&ghost, "10.0.0.1").await.code(), "TargetGroupNotFound");
    // The waiter target_deregistered takes InvalidTarget as done.
    let h = s.call("DescribeTargetHealth", &[("TargetGroupArn", &ip), ("Targets.member.1.Id", "i-1")]).await;
    assert_eq!(h.code(), "InvalidTarget");
    s.stop().await;
}
