//! Load balancers, target groups, listeners and rules over the real wire (signed form posts to a
//! real server): ARNs and DNS names as AWS shapes them, the record's state read back, forward
//! actions described in both forms, `load_balancer_arns` kept by every listener and rule write
//! (and by DeleteLoadBalancer), DeleteTargetGroup refused while in use, rule priorities and the
//! default rule, and the errors ELB answers bad input with.

mod common;

use common::Server;
use flotilla_endpoints::elb::{LoadBalancer, TargetGroup};
use flotilla_endpoints::keys;

fn id_of(arn: &str) -> String {
    arn.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_is_created_provisioning_and_described_from_its_record() {
    let s = Server::start().await;
    let lb = s
        .call("CreateLoadBalancer", &[("Name", "web"), ("Tags.member.1.Key", "team"), ("Tags.member.1.Value", "a")])
        .await
        .ok();
    let arn = lb.one("LoadBalancerArn");
    let id = id_of(&arn);
    assert_eq!(id.len(), 16);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(arn, format!("arn:aws:elasticloadbalancing:us-east-1:{}:loadbalancer/app/web/{id}", s.ctx.arns.account));
    assert_eq!(lb.one("DNSName"), format!("web-{id}.us-east-1.elb.localhost"));
    assert_eq!(lb.one("Code"), "provisioning");
    assert_eq!(lb.one("Type"), "application");
    let zones = lb.all("ZoneName");
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);

    // The data plane flips the record's state; Describe reads it.
    let key = keys::load_balancer(&id);
    let mut record: LoadBalancer = s.get(&key).await.expect("record");
    record.state = "active".into();
    s.put(&key, &record).await;
    let d = s.call("DescribeLoadBalancers", &[("Names.member.1", "web")]).await.ok();
    assert_eq!(d.one("Code"), "active");

    // Same name, same settings: the same load balancer; other settings: a duplicate.
    let again = s.call("CreateLoadBalancer", &[("Name", "web")]).await.ok();
    assert_eq!(again.one("LoadBalancerArn"), arn);
    let other = s.call("CreateLoadBalancer", &[("Name", "web"), ("Scheme", "internal")]).await;
    assert_eq!(other.code(), "DuplicateLoadBalancerName");

    let vpc = flotilla_hosts::network::default_vpc("us-east-1");
    let nlb = s
        .call(
            "CreateLoadBalancer",
            &[("Name", "tcp"), ("Type", "network"), ("Subnets.member.1", &vpc.subnets[1].subnet_id)],
        )
        .await
        .ok();
    assert!(nlb.one("LoadBalancerArn").contains(":loadbalancer/net/tcp/"));
    assert_eq!(nlb.all("SubnetId"), [vpc.subnets[1].subnet_id.clone()]);

    // A subnet made with CreateSubnet (as the EC2 API stores it) is as good as a default one.
    let mut custom = vpc.subnets[0].clone();
    custom.subnet_id = "subnet-0custom0000000000".into();
    custom.cidr_block = "172.31.200.0/24".into();
    custom.default_for_az = false;
    s.put(&flotilla_hosts::keys::subnet(&custom.subnet_id), &custom).await;
    let mixed = s
        .call(
            "CreateLoadBalancer",
            &[
                ("Name", "mixed"),
                ("Subnets.member.1", &custom.subnet_id),
                ("Subnets.member.2", &vpc.subnets[2].subnet_id),
            ],
        )
        .await
        .ok();
    assert_eq!(mixed.all("SubnetId"), [custom.subnet_id.clone(), vpc.subnets[2].subnet_id.clone()]);
    assert_eq!(mixed.all("ZoneName"), ["us-east-1a", "us-east-1c"]);
    let same_zone = s
        .call(
            "CreateLoadBalancer",
            &[("Name", "x"), ("Subnets.member.1", &custom.subnet_id), ("Subnets.member.2", &vpc.subnets[0].subnet_id)],
        )
        .await;
    assert_eq!(same_zone.code(), "InvalidConfigurationRequest");

    // Network settings change after creation.
    let moved = s
        .call(
            "SetSubnets",
            &[
                ("LoadBalancerArn", &arn),
                ("Subnets.member.1", &vpc.subnets[1].subnet_id),
                ("Subnets.member.2", &vpc.subnets[2].subnet_id),
            ],
        )
        .await
        .ok();
    assert_eq!(moved.all("ZoneName"), ["us-east-1b", "us-east-1c"]);
    let record: LoadBalancer = s.get(&key).await.unwrap();
    assert_eq!(record.zones.len(), 2);
    let sg = s
        .call("SetSecurityGroups", &[("LoadBalancerArn", &arn), ("SecurityGroups.member.1", &vpc.security_group_id)])
        .await
        .ok();
    assert_eq!(sg.all("member"), std::slice::from_ref(&vpc.security_group_id));
    let bad_sg =
        s.call("SetSecurityGroups", &[("LoadBalancerArn", &arn), ("SecurityGroups.member.1", "sg-nope")]).await;
    assert_eq!(bad_sg.code(), "InvalidSecurityGroup");
    let dual = s.call("SetIpAddressType", &[("LoadBalancerArn", &arn), ("IpAddressType", "dualstack")]).await;
    assert_eq!(dual.code(), "ValidationError");
    s.call("SetIpAddressType", &[("LoadBalancerArn", &arn), ("IpAddressType", "ipv4")]).await.ok();

    let bad = [
        (vec![("Name", "-bad")], "ValidationError"),
        (vec![("Name", "x"), ("Subnets.member.1", "subnet-nope")], "SubnetNotFound"),
        (vec![("Name", "x"), ("Subnets.member.1", &vpc.subnets[0].subnet_id)], "ValidationError"),
        (vec![("Name", "x"), ("Type", "classic")], "ValidationError"),
        (vec![("Name", "x"), ("SecurityGroups.member.1", "sg-nope")], "InvalidSecurityGroup"),
    ];
    for (params, code) in bad {
        assert_eq!(s.call("CreateLoadBalancer", &params).await.code(), code, "{params:?}");
    }
    let missing = s.call("DescribeLoadBalancers", &[("Names.member.1", "nope")]).await;
    assert_eq!(missing.code(), "LoadBalancerNotFound");
    assert!(missing.one("Message").contains("nope"));
    let not_arn = s.call("DescribeLoadBalancers", &[("LoadBalancerArns.member.1", "arn:aws:ecs:x")]).await;
    assert_eq!(not_arn.code(), "ValidationError");

    let tags = s.call("DescribeTags", &[("ResourceArns.member.1", &arn)]).await.ok();
    assert_eq!((tags.one("Key"), tags.one("Value")), ("team".into(), "a".into()));

    // Paging: every load balancer once, one per page.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut params = vec![("PageSize", "1")];
        if let Some(m) = &marker {
            params.push(("Marker", m));
        }
        let page = s.call("DescribeLoadBalancers", &params).await.ok();
        seen.extend(page.all("LoadBalancerArn"));
        match page.all("NextMarker").first() {
            Some(m) => marker = Some(m.clone()),
            None => break,
        }
    }
    let all = s.call("DescribeLoadBalancers", &[]).await.ok().all("LoadBalancerArn");
    assert_eq!(all.len(), 3);
    assert_eq!(seen, all);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_and_rules_keep_the_groups_load_balancer_arns() {
    let s = Server::start().await;
    let lb = s.alb("front").await;
    let blue = s.target_group("blue", "HTTP", "ip").await;
    let green = s.target_group("green", "HTTP", "ip").await;
    let tg_record = |arn: &str| keys::target_group(&id_of(arn));
    let listener = s.forward_listener(&lb, "HTTP", "80", &blue).await;

    let d = s.call("DescribeListeners", &[("LoadBalancerArn", &lb)]).await.ok();
    assert_eq!(d.one("ListenerArn"), listener);
    assert!(listener.contains(&format!(":listener/app/front/{}/", id_of(&lb))));
    // A forward to one group: both TargetGroupArn and ForwardConfig, weight 1, stickiness off.
    assert!(d.body.contains(&format!(
        "<TargetGroupArn>{blue}</TargetGroupArn><ForwardConfig><TargetGroups><member><TargetGroupArn>{blue}</TargetGroupArn><Weight>1</Weight></member></TargetGroups><TargetGroupStickinessConfig><Enabled>false</Enabled></TargetGroupStickinessConfig></ForwardConfig>"
    )), "{}", d.body);
    let tgs = s.call("DescribeTargetGroups", &[("TargetGroupArns.member.1", &blue)]).await.ok();
    assert_eq!(tgs.all("LoadBalancerArns").concat(), format!("<member>{lb}</member>"));
    let record: TargetGroup = s.get(&tg_record(&blue)).await.unwrap();
    assert_eq!(record.load_balancer_arns, std::slice::from_ref(&lb));
    let green_record: TargetGroup = s.get(&tg_record(&green)).await.unwrap();
    assert!(green_record.load_balancer_arns.is_empty());

    // A rule forwarding to green puts the load balancer on green too.
    let rule = s
        .call(
            "CreateRule",
            &[
                ("ListenerArn", &listener),
                ("Priority", "10"),
                ("Conditions.member.1.Field", "path-pattern"),
                ("Conditions.member.1.Values.member.1", "/api/*"),
                ("Conditions.member.2.Field", "host-header"),
                ("Conditions.member.2.HostHeaderConfig.Values.member.1", "*.example.com"),
                ("Actions.member.1.Type", "forward"),
                ("Actions.member.1.TargetGroupArn", &green),
            ],
        )
        .await
        .ok();
    let rule_arn = rule.one("RuleArn");
    assert!(rule_arn.contains(&format!(":listener-rule/app/front/{}/{}/", id_of(&lb), id_of(&listener))));
    let green_record: TargetGroup = s.get(&tg_record(&green)).await.unwrap();
    assert_eq!(green_record.load_balancer_arns, std::slice::from_ref(&lb));
    let in_use = s.call("DeleteTargetGroup", &[("TargetGroupArn", &green)]).await;
    assert_eq!(in_use.code(), "ResourceInUse");
    let by_lb = s.call("DescribeTargetGroups", &[("LoadBalancerArn", &lb)]).await.ok();
    assert_eq!(by_lb.all("TargetGroupName"), ["blue", "green"]);

    // DescribeRules: the rule, then the default rule.
    let rules = s.call("DescribeRules", &[("ListenerArn", &listener)]).await.ok();
    assert_eq!(rules.all("Priority"), ["10", "default"]);
    assert_eq!(rules.all("IsDefault"), ["false", "true"]);
    assert_eq!(rules.all("Field"), ["path-pattern", "host-header"]);
    let default_arn = rules.all("RuleArn")[1].clone();
    let one = s.call("DescribeRules", &[("RuleArns.member.1", &default_arn)]).await.ok();
    assert_eq!(one.one("Priority"), "default");
    assert_eq!(s.call("DeleteRule", &[("RuleArn", &default_arn)]).await.code(), "OperationNotPermitted");

    let taken = s
        .call(
            "CreateRule",
            &[
                ("ListenerArn", &listener),
                ("Priority", "10"),
                ("Conditions.member.1.Field", "path-pattern"),
                ("Conditions.member.1.Values.member.1", "/x"),
                ("Actions.member.1.Type", "fixed-response"),
                ("Actions.member.1.FixedResponseConfig.StatusCode", "404"),
            ],
        )
        .await;
    assert_eq!(taken.code(), "PriorityInUse");
    let second = s
        .call(
            "CreateRule",
            &[
                ("ListenerArn", &listener),
                ("Priority", "20"),
                ("Conditions.member.1.Field", "http-request-method"),
                ("Conditions.member.1.HttpRequestMethodConfig.Values.member.1", "POST"),
                ("Actions.member.1.Type", "redirect"),
                ("Actions.member.1.RedirectConfig.Path", "/new"),
                ("Actions.member.1.RedirectConfig.StatusCode", "HTTP_301"),
            ],
        )
        .await
        .ok()
        .one("RuleArn");
    let swapped = s
        .call(
            "SetRulePriorities",
            &[
                ("RulePriorities.member.1.RuleArn", &rule_arn),
                ("RulePriorities.member.1.Priority", "20"),
                ("RulePriorities.member.2.RuleArn", &second),
                ("RulePriorities.member.2.Priority", "10"),
            ],
        )
        .await
        .ok();
    assert_eq!(swapped.all("Priority"), ["20", "10"]);
    let rules = s.call("DescribeRules", &[("ListenerArn", &listener)]).await.ok();
    assert_eq!(rules.all("RuleArn")[..2], [second.clone(), rule_arn.clone()]);

    // Pointing the rule elsewhere takes the load balancer off green.
    s.call(
        "ModifyRule",
        &[
            ("RuleArn", &rule_arn),
            ("Actions.member.1.Type", "fixed-response"),
            ("Actions.member.1.FixedResponseConfig.StatusCode", "503"),
        ],
    )
    .await
    .ok();
    let green_record: TargetGroup = s.get(&tg_record(&green)).await.unwrap();
    assert!(green_record.load_balancer_arns.is_empty());
    // Weighted forward on the listener: both groups.
    s.call(
        "ModifyListener",
        &[
            ("ListenerArn", &listener),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn", &blue),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.Weight", "80"),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.2.TargetGroupArn", &green),
            ("DefaultActions.member.1.ForwardConfig.TargetGroups.member.2.Weight", "20"),
        ],
    )
    .await
    .ok();
    let green_record: TargetGroup = s.get(&tg_record(&green)).await.unwrap();
    assert_eq!(green_record.load_balancer_arns, std::slice::from_ref(&lb));

    // Deleting the load balancer deletes its listeners and rules and frees the groups.
    s.call("DeleteLoadBalancer", &[("LoadBalancerArn", &lb)]).await.ok();
    assert!(s.keys_under(&keys::listeners_of(&id_of(&lb))).await.is_empty());
    assert!(s.keys_under(&keys::rules_of(&id_of(&listener))).await.is_empty());
    for tg in [&blue, &green] {
        let r: TargetGroup = s.get(&tg_record(tg)).await.unwrap();
        assert!(r.load_balancer_arns.is_empty(), "{tg}");
    }
    assert_eq!(s.call("DescribeListeners", &[("ListenerArns.member.1", &listener)]).await.code(), "ListenerNotFound");
    // Gone already: still a success; the name is free again.
    s.call("DeleteLoadBalancer", &[("LoadBalancerArn", &lb)]).await.ok();
    s.call("DeleteTargetGroup", &[("TargetGroupArn", &green)]).await.ok();
    assert_eq!(s.call("DescribeTargetGroups", &[("Names.member.1", "green")]).await.code(), "TargetGroupNotFound");
    s.alb("front").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_protocols_and_bad_actions_get_elbs_errors() {
    let s = Server::start().await;
    let alb = s.alb("app").await;
    let nlb = s.call("CreateLoadBalancer", &[("Name", "net"), ("Type", "network")]).await.ok().one("LoadBalancerArn");
    let http = s.target_group("http", "HTTP", "instance").await;
    let tcp = s.target_group("tcp", "TCP", "ip").await;
    s.forward_listener(&nlb, "TCP", "5432", &tcp).await;
    let listen = |lb: &str, protocol: &str, port: &str, tg: &str| {
        let (lb, protocol, port, tg) = (lb.to_string(), protocol.to_string(), port.to_string(), tg.to_string());
        let s = &s;
        async move {
            s.call(
                "CreateListener",
                &[
                    ("LoadBalancerArn", &lb),
                    ("Protocol", &protocol),
                    ("Port", &port),
                    ("DefaultActions.member.1.Type", "forward"),
                    ("DefaultActions.member.1.TargetGroupArn", &tg),
                ],
            )
            .await
        }
    };
    assert_eq!(listen(&alb, "HTTPS", "443", &http).await.code(), "UnsupportedProtocol");
    assert_eq!(listen(&nlb, "UDP", "53", &tcp).await.code(), "UnsupportedProtocol");
    assert_eq!(listen(&alb, "TCP", "81", &http).await.code(), "IncompatibleProtocols");
    assert_eq!(listen(&nlb, "HTTP", "81", &tcp).await.code(), "IncompatibleProtocols");
    assert_eq!(listen(&alb, "HTTP", "80", &tcp).await.code(), "IncompatibleProtocols");
    assert_eq!(listen(&nlb, "TCP", "5432", &tcp).await.code(), "DuplicateListener");
    assert_eq!(listen(&alb, "HTTP", "0", &http).await.code(), "ValidationError");
    let ghost = http.replace(&id_of(&http), "0000000000000000");
    assert_eq!(listen(&alb, "HTTP", "80", &ghost).await.code(), "TargetGroupNotFound");
    let ghost_lb = alb.replace(&id_of(&alb), "0000000000000000");
    assert_eq!(listen(&ghost_lb, "HTTP", "80", &http).await.code(), "LoadBalancerNotFound");
    // Nothing half-written by the refusals.
    assert!(s.keys_under(&keys::listeners_of(&id_of(&alb))).await.is_empty());
    let fixed = s
        .call(
            "CreateListener",
            &[
                ("LoadBalancerArn", &alb),
                ("Port", "8080"),
                ("DefaultActions.member.1.Type", "fixed-response"),
                ("DefaultActions.member.1.FixedResponseConfig.StatusCode", "200"),
                ("DefaultActions.member.1.FixedResponseConfig.ContentType", "text/plain"),
                ("DefaultActions.member.1.FixedResponseConfig.MessageBody", "hello"),
            ],
        )
        .await
        .ok();
    assert_eq!(fixed.one("Protocol"), "HTTP");
    assert_eq!(fixed.one("MessageBody"), "hello");
    let nlb_fixed = s
        .call(
            "CreateListener",
            &[
                ("LoadBalancerArn", &nlb),
                ("Port", "9000"),
                ("DefaultActions.member.1.Type", "fixed-response"),
                ("DefaultActions.member.1.FixedResponseConfig.StatusCode", "200"),
            ],
        )
        .await;
    assert_eq!(nlb_fixed.code(), "InvalidLoadBalancerAction");
    let no_actions = s.call("CreateListener", &[("LoadBalancerArn", &alb), ("Port", "81")]).await;
    assert_eq!(no_actions.code(), "ValidationError");

    // A group that one load balancer uses cannot be used by another.
    let alb2 = s.alb("app2").await;
    let tg2 = s.target_group("shared", "HTTP", "ip").await;
    s.forward_listener(&alb, "HTTP", "80", &tg2).await;
    assert_eq!(listen(&alb2, "HTTP", "80", &tg2).await.code(), "TargetGroupAssociationLimit");

    // Classic ELB's version is refused, pointing at ELBv2.
    let classic = s.raw("Action=CreateLoadBalancer&Version=2012-06-01&LoadBalancerName=old").await;
    assert_eq!(classic.code(), "InvalidAction");
    assert!(classic.one("Message").contains("Classic Load Balancers"), "{}", classic.body);
    assert_eq!(s.call("FlyToTheMoon", &[]).await.code(), "InvalidAction");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_have_defaults_and_refuse_unknown_keys_in_terraforms_wording() {
    let s = Server::start().await;
    let lb = s.alb("attrs").await;
    let tg = s.target_group("attrs", "HTTP", "ip").await;
    let d = s.call("DescribeTargetGroupAttributes", &[("TargetGroupArn", &tg)]).await.ok();
    let keys = d.all("Key");
    assert!(
        keys.contains(&"deregistration_delay.timeout_seconds".to_string())
            && keys.contains(&"stickiness.type".to_string())
    );
    let m = s
        .call(
            "ModifyTargetGroupAttributes",
            &[
                ("TargetGroupArn", &tg),
                ("Attributes.member.1.Key", "deregistration_delay.timeout_seconds"),
                ("Attributes.member.1.Value", "5"),
            ],
        )
        .await
        .ok();
    assert!(m.body.contains("<Key>deregistration_delay.timeout_seconds</Key><Value>5</Value>"));
    let record: TargetGroup = s.get(&keys::target_group(&id_of(&tg))).await.unwrap();
    assert_eq!(record.deregistration_delay_seconds(), 5);
    let unknown = s
        .call(
            "ModifyTargetGroupAttributes",
            &[
                ("TargetGroupArn", &tg),
                ("Attributes.member.1.Key", "lambda.multi_value_headers.enabled"),
                ("Attributes.member.1.Value", "true"),
            ],
        )
        .await;
    assert_eq!(unknown.code(), "ValidationError");
    assert_eq!(
        unknown.one("Message"),
        "Target group attribute key 'lambda.multi_value_headers.enabled' is not recognized"
    );
    let unknown = s
        .call(
            "ModifyLoadBalancerAttributes",
            &[
                ("LoadBalancerArn", &lb),
                ("Attributes.member.1.Key", "nope.enabled"),
                ("Attributes.member.1.Value", "true"),
            ],
        )
        .await;
    assert_eq!(unknown.one("Message"), "Load balancer attribute key 'nope.enabled' is not recognized");
    // Deletion protection holds.
    s.call(
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerArn", &lb),
            ("Attributes.member.1.Key", "deletion_protection.enabled"),
            ("Attributes.member.1.Value", "true"),
        ],
    )
    .await
    .ok();
    assert_eq!(s.call("DeleteLoadBalancer", &[("LoadBalancerArn", &lb)]).await.code(), "OperationNotPermitted");
    let attrs = s.call("DescribeLoadBalancerAttributes", &[("LoadBalancerArn", &lb)]).await.ok();
    assert!(attrs.body.contains("<Key>deletion_protection.enabled</Key><Value>true</Value>"));
    assert!(attrs.body.contains("<Key>idle_timeout.timeout_seconds</Key><Value>60</Value>"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_calls_are_routed_by_action_and_version() {
    let s = Server::start_with(flotilla_api::AuthMode::Disabled).await;
    // Only ELBv2 has CreateTargetGroup: no version needed.
    let tg = s.unsigned("Action=CreateTargetGroup&Name=dev&Protocol=HTTP&Port=80").await.ok();
    assert!(tg.body.contains("<CreateTargetGroupResult>"), "{}", tg.body);
    // Classic ELB has DescribeLoadBalancers too: ELBv2 answers it when the version says so.
    let v2 = s.unsigned("Action=DescribeLoadBalancers&Version=2015-12-01").await.ok();
    assert!(v2.body.contains("<DescribeLoadBalancersResult>"), "{}", v2.body);
    let ambiguous = s.unsigned("Action=DescribeLoadBalancers").await;
    assert!(!ambiguous.body.contains("<DescribeLoadBalancersResult>"), "{}", ambiguous.body);
    let classic = s.unsigned("Action=DescribeLoadBalancers&Version=2012-06-01").await;
    assert_eq!(classic.code(), "InvalidAction");
    assert!(classic.one("Message").contains("Classic Load Balancers"));
    s.stop().await;
}
