//! Racing writers: rule priorities stay unique, names stay unique, and every group a load
//! balancer forwards to lists it, however the concurrent writes interleave.

mod common;

use std::sync::Arc;

use common::Server;
use flotilla_endpoints::elb::TargetGroup;
use flotilla_endpoints::keys;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writes_keep_priorities_names_and_group_links_right() {
    let s = Arc::new(Server::start().await);
    let lb = s.alb("race").await;
    let base = s.target_group("base", "HTTP", "ip").await;
    let listener = s.forward_listener(&lb, "HTTP", "80", &base).await;

    // Eight rules race for one priority: one wins, the rest are told it is in use.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, listener) = (s.clone(), listener.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!("/p{i}");
            let a = s
                .call(
                    "CreateRule",
                    &[
                        ("ListenerArn", &listener),
                        ("Priority", "7"),
                        ("Conditions.member.1.Field", "path-pattern"),
                        ("Conditions.member.1.Values.member.1", &path),
                        ("Actions.member.1.Type", "fixed-response"),
                        ("Actions.member.1.FixedResponseConfig.StatusCode", "200"),
                    ],
                )
                .await;
            if a.status == 200 {
                "ok".to_string()
            } else {
                a.code()
            }
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| *o == "ok").count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o == "ok" || o == "PriorityInUse"), "{outcomes:?}");

    // Rules forwarding to six groups, created at once: every group lists the load balancer.
    let mut groups = Vec::new();
    for i in 0..6 {
        groups.push(s.target_group(&format!("g{i}"), "HTTP", "ip").await);
    }
    let mut tasks = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let (s, listener, g) = (s.clone(), listener.clone(), g.clone());
        tasks.push(tokio::spawn(async move {
            let (priority, path) = ((100 + i).to_string(), format!("/g{i}"));
            s.call(
                "CreateRule",
                &[
                    ("ListenerArn", &listener),
                    ("Priority", &priority),
                    ("Conditions.member.1.Field", "path-pattern"),
                    ("Conditions.member.1.Values.member.1", &path),
                    ("Actions.member.1.Type", "forward"),
                    ("Actions.member.1.TargetGroupArn", &g),
                ],
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    for g in &groups {
        let id = g.rsplit('/').next().unwrap();
        let record: TargetGroup = s.get(&keys::target_group(id)).await.unwrap();
        assert_eq!(record.load_balancer_arns, std::slice::from_ref(&lb), "{g}");
    }

    // Four creates of one target group name with different ports: one name, one group.
    let mut tasks = Vec::new();
    for port in ["81", "82", "83", "84"] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.call("CreateTargetGroup", &[("Name", "same"), ("Protocol", "HTTP"), ("Port", port)]).await.status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap() == 200);
    }
    assert_eq!(ok, 1);
    let named = s.call("DescribeTargetGroups", &[("Names.member.1", "same")]).await.ok();
    assert_eq!(named.all("TargetGroupArn").len(), 1);
}
