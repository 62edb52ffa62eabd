"""The ELBv2 API end to end through boto3 and the aws CLI: application load balancers with target
groups, listeners (forward, fixed-response, redirect) and rules (path and host conditions, both
encodings, SetRulePriorities); network load balancers with TCP listeners; attributes (defaults,
changes, and the wording Terraform skips unknown keys on); targets and their health states; tags;
the waiters `load_balancer_exists` and `target_deregistered`; and every bad input answered with
ELB's error code. No load balancer node runs here: health stays what the API itself reports
(`unused`, `initial`, `draining`), and load balancers stay `provisioning`."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from support import assert_error, make_client

FAST = {"Delay": 1, "MaxAttempts": 10}


@pytest.fixture(scope="module")
def elbv2(server_env):
    return make_client(server_env, service="elbv2")


@pytest.fixture(scope="module")
def ec2(server_env):
    return make_client(server_env, service="ec2")


@pytest.fixture(scope="module")
def subnets(ec2):
    return sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"])


def ok(res):
    assert res.ok, f"`aws {' '.join(res.args)}` failed ({res.returncode}): {res.stderr}"
    return res.data


def make_alb(elbv2, name, subnets):
    return elbv2.create_load_balancer(Name=name, Subnets=subnets[:2])["LoadBalancers"][0]


def make_tg(elbv2, name, protocol="HTTP", target_type="ip", port=80, **extra):
    return elbv2.create_target_group(
        Name=name, Protocol=protocol, Port=port, TargetType=target_type, **extra
    )["TargetGroups"][0]


def test_alb_with_groups_listener_and_rules(elbv2, subnets, uid):
    lb = make_alb(elbv2, f"alb-{uid}", subnets)
    lb_arn = lb["LoadBalancerArn"]
    assert lb["Type"] == "application" and lb["State"]["Code"] == "provisioning"
    assert lb["DNSName"] == f"alb-{uid}-{lb_arn.rsplit('/', 1)[1]}.us-east-1.elb.localhost"
    assert sorted(z["SubnetId"] for z in lb["AvailabilityZones"]) == subnets[:2]
    elbv2.get_waiter("load_balancer_exists").wait(LoadBalancerArns=[lb_arn], WaiterConfig=FAST)

    web = make_tg(elbv2, f"web-{uid}", HealthCheckPath="/health", Matcher={"HttpCode": "200-299"})
    api = make_tg(elbv2, f"api-{uid}")
    assert web["HealthCheckPath"] == "/health" and web["Matcher"]["HttpCode"] == "200-299"
    assert (api["HealthCheckIntervalSeconds"], api["HealthCheckTimeoutSeconds"]) == (30, 5)
    assert (api["HealthyThresholdCount"], api["UnhealthyThresholdCount"]) == (5, 2)
    assert api["HealthCheckPath"] == "/" and api["Matcher"]["HttpCode"] == "200"
    assert api["LoadBalancerArns"] == []

    listener = elbv2.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": web["TargetGroupArn"]}],
    )["Listeners"][0]
    action = listener["DefaultActions"][0]
    assert action["TargetGroupArn"] == web["TargetGroupArn"]
    assert action["ForwardConfig"] == {
        "TargetGroups": [{"TargetGroupArn": web["TargetGroupArn"], "Weight": 1}],
        "TargetGroupStickinessConfig": {"Enabled": False},
    }
    (web_now,) = elbv2.describe_target_groups(TargetGroupArns=[web["TargetGroupArn"]])["TargetGroups"]
    assert web_now["LoadBalancerArns"] == [lb_arn]

    fixed = elbv2.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=8080,
        DefaultActions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain", "MessageBody": "nothing here"},
            }
        ],
    )["Listeners"][0]
    assert fixed["DefaultActions"][0]["FixedResponseConfig"]["MessageBody"] == "nothing here"
    redirect = elbv2.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=8081,
        DefaultActions=[{"Type": "redirect", "RedirectConfig": {"Port": "80", "StatusCode": "HTTP_302"}}],
    )["Listeners"][0]
    rc = redirect["DefaultActions"][0]["RedirectConfig"]
    assert (rc["Port"], rc["Host"], rc["StatusCode"]) == ("80", "#{host}", "HTTP_302")
    ports = [l["Port"] for l in elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]]
    assert ports == [80, 8080, 8081]

    path_rule = elbv2.create_rule(
        ListenerArn=listener["ListenerArn"],
        Priority=10,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*"]}}],
        Actions=[{"Type": "forward", "TargetGroupArn": api["TargetGroupArn"]}],
    )["Rules"][0]
    assert path_rule["Conditions"][0]["Values"] == ["/api/*"]
    (api_now,) = elbv2.describe_target_groups(Names=[f"api-{uid}"])["TargetGroups"]
    assert api_now["LoadBalancerArns"] == [lb_arn]
    host_rule = elbv2.create_rule(
        ListenerArn=listener["ListenerArn"],
        Priority=20,
        Conditions=[{"Field": "host-header", "Values": ["admin.example.com"]}],
        Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "403"}}],
    )["Rules"][0]
    assert host_rule["Conditions"][0]["HostHeaderConfig"]["Values"] == ["admin.example.com"]

    rules = elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    assert [r["Priority"] for r in rules] == ["10", "20", "default"]
    assert [r["IsDefault"] for r in rules] == [False, False, True]
    assert rules[2]["Actions"][0]["TargetGroupArn"] == web["TargetGroupArn"]

    swapped = elbv2.set_rule_priorities(
        RulePriorities=[
            {"RuleArn": path_rule["RuleArn"], "Priority": 20},
            {"RuleArn": host_rule["RuleArn"], "Priority": 10},
        ]
    )["Rules"]
    assert {r["RuleArn"]: r["Priority"] for r in swapped} == {path_rule["RuleArn"]: "20", host_rule["RuleArn"]: "10"}
    rules = elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    assert [r["RuleArn"] for r in rules[:2]] == [host_rule["RuleArn"], path_rule["RuleArn"]]

    with pytest.raises(ClientError) as e:
        elbv2.delete_target_group(TargetGroupArn=api["TargetGroupArn"])
    assert_error(e, "ResourceInUse")
    elbv2.delete_rule(RuleArn=path_rule["RuleArn"])
    (api_now,) = elbv2.describe_target_groups(TargetGroupArns=[api["TargetGroupArn"]])["TargetGroups"]
    assert api_now["LoadBalancerArns"] == []
    elbv2.delete_target_group(TargetGroupArn=api["TargetGroupArn"])

    moved = elbv2.set_subnets(LoadBalancerArn=lb_arn, Subnets=subnets[1:3])["AvailabilityZones"]
    assert sorted(z["SubnetId"] for z in moved) == subnets[1:3]
    assert elbv2.set_ip_address_type(LoadBalancerArn=lb_arn, IpAddressType="ipv4")["IpAddressType"] == "ipv4"

    elbv2.delete_load_balancer(LoadBalancerArn=lb_arn)
    with pytest.raises(ClientError) as e:
        elbv2.describe_listeners(ListenerArns=[listener["ListenerArn"]])
    assert_error(e, "ListenerNotFound")
    (web_now,) = elbv2.describe_target_groups(TargetGroupArns=[web["TargetGroupArn"]])["TargetGroups"]
    assert web_now["LoadBalancerArns"] == []
    with pytest.raises(ClientError) as e:
        elbv2.describe_load_balancers(LoadBalancerArns=[lb_arn])
    assert_error(e, "LoadBalancerNotFound")


def test_the_cli_speaks_the_shorthand_encodings(aws, subnets, uid):
    lb = ok(aws("elbv2", "create-load-balancer", "--name", f"cli-{uid}", "--subnets", *subnets))["LoadBalancers"][0]
    tg = ok(
        aws("elbv2", "create-target-group", "--name", f"cli-{uid}", "--protocol", "HTTP", "--port", "8080",
            "--target-type", "ip")
    )["TargetGroups"][0]
    listener = ok(
        aws("elbv2", "create-listener", "--load-balancer-arn", lb["LoadBalancerArn"], "--protocol", "HTTP",
            "--port", "80", "--default-actions", f"Type=forward,TargetGroupArn={tg['TargetGroupArn']}")
    )["Listeners"][0]
    rule = ok(
        aws("elbv2", "create-rule", "--listener-arn", listener["ListenerArn"], "--priority", "5",
            "--conditions", "Field=path-pattern,Values=/img/*",
            "--actions", f"Type=forward,TargetGroupArn={tg['TargetGroupArn']}")
    )["Rules"][0]
    assert rule["Conditions"][0]["PathPatternConfig"]["Values"] == ["/img/*"]
    described = ok(aws("elbv2", "describe-load-balancers", "--names", f"cli-{uid}"))["LoadBalancers"]
    assert [d["LoadBalancerArn"] for d in described] == [lb["LoadBalancerArn"]]
    bad = aws("elbv2", "describe-target-groups", "--names", f"nope-{uid}")
    assert not bad.ok and "TargetGroupNotFound" in bad.error
    ok(aws("elbv2", "delete-load-balancer", "--load-balancer-arn", lb["LoadBalancerArn"]))


def test_nlb_with_a_tcp_listener(elbv2, subnets, uid):
    lb = elbv2.create_load_balancer(Name=f"nlb-{uid}", Type="network", Subnets=subnets[:1])["LoadBalancers"][0]
    assert lb["Type"] == "network" and ":loadbalancer/net/" in lb["LoadBalancerArn"]
    tg = make_tg(elbv2, f"tcp-{uid}", protocol="TCP", target_type="instance", port=5432)
    assert tg["HealthCheckProtocol"] == "TCP" and tg["HealthCheckTimeoutSeconds"] == 10
    attrs = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"])["Attributes"]}
    assert attrs["stickiness.type"] == "source_ip" and attrs["preserve_client_ip.enabled"] == "true"
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="TCP",
        Port=5432,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )["Listeners"][0]
    assert listener["Protocol"] == "TCP"
    with pytest.raises(ClientError) as e:
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )
    assert_error(e, "IncompatibleProtocols")
    with pytest.raises(ClientError) as e:
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TLS", Port=443,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )
    assert_error(e, "UnsupportedProtocol")
    with pytest.raises(ClientError) as e:
        elbv2.create_rule(
            ListenerArn=listener["ListenerArn"], Priority=1,
            Conditions=[{"Field": "path-pattern", "Values": ["/"]}],
            Actions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )
    assert_error(e, "InvalidConfigurationRequest")


def test_attributes_defaults_changes_and_unknown_keys(elbv2, subnets, uid):
    lb = make_alb(elbv2, f"attr-{uid}", subnets)
    tg = make_tg(elbv2, f"attr-{uid}")
    lb_attrs = {a["Key"]: a["Value"] for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]}
    assert lb_attrs["idle_timeout.timeout_seconds"] == "60" and lb_attrs["deletion_protection.enabled"] == "false"
    tg_attrs = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"])["Attributes"]}
    assert tg_attrs["deregistration_delay.timeout_seconds"] == "300"
    assert tg_attrs["stickiness.enabled"] == "false" and tg_attrs["load_balancing.algorithm.type"] == "round_robin"
    assert tg_attrs["slow_start.duration_seconds"] == "0"

    changed = elbv2.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"],
        Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "5"},
            {"Key": "stickiness.enabled", "Value": "true"},
            {"Key": "stickiness.lb_cookie.duration_seconds", "Value": "60"},
            {"Key": "load_balancing.algorithm.type", "Value": "least_outstanding_requests"},
        ],
    )["Attributes"]
    changed = {a["Key"]: a["Value"] for a in changed}
    assert changed["deregistration_delay.timeout_seconds"] == "5" and changed["stickiness.enabled"] == "true"
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[{"Key": "idle_timeout.timeout_seconds", "Value": "120"}]
    )
    lb_attrs = {a["Key"]: a["Value"] for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]}
    assert lb_attrs["idle_timeout.timeout_seconds"] == "120"

    with pytest.raises(ClientError) as e:
        elbv2.modify_target_group_attributes(
            TargetGroupArn=tg["TargetGroupArn"], Attributes=[{"Key": "lambda.multi_value_headers.enabled", "Value": "true"}]
        )
    assert assert_error(e, "ValidationError")["Error"]["Message"] == (
        "Target group attribute key 'lambda.multi_value_headers.enabled' is not recognized"
    )
    with pytest.raises(ClientError) as e:
        elbv2.modify_load_balancer_attributes(
            LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[{"Key": "secret.feature", "Value": "on"}]
        )
    assert assert_error(e, "ValidationError")["Error"]["Message"] == (
        "Load balancer attribute key 'secret.feature' is not recognized"
    )
    for key, value in [("slow_start.duration_seconds", "30"), ("deregistration_delay.timeout_seconds", "4000"),
                       ("load_balancing.algorithm.type", "weighted_random")]:
        with pytest.raises(ClientError) as e:
            elbv2.modify_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"], Attributes=[{"Key": key, "Value": value}])
        assert_error(e, "ValidationError")


def test_targets_and_their_health(elbv2, subnets, uid):
    tg = make_tg(elbv2, f"tgt-{uid}")
    arn = tg["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.5"}, {"Id": "10.0.0.6", "Port": 8080}])
    health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    assert {(h["Target"]["Id"], h["Target"]["Port"]) for h in health} == {("10.0.0.5", 80), ("10.0.0.6", 8080)}
    assert {(h["TargetHealth"]["State"], h["TargetHealth"]["Reason"]) for h in health} == {("unused", "Target.NotInUse")}

    lb = make_alb(elbv2, f"tgt-{uid}", subnets)
    elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}],
    )
    health = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    assert {(h["TargetHealth"]["State"], h["TargetHealth"]["Reason"]) for h in health} == {
        ("initial", "Elb.RegistrationInProgress")
    }

    elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.5"}])
    (draining,) = elbv2.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.5"}])["TargetHealthDescriptions"]
    assert (draining["TargetHealth"]["State"], draining["TargetHealth"]["Reason"]) == (
        "draining", "Target.DeregistrationInProgress"
    )

    # With no deregistration delay, deregistering is done at once: the waiter sees `unused`.
    elbv2.modify_target_group_attributes(
        TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "0"}]
    )
    elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.6", "Port": 8080}])
    elbv2.get_waiter("target_deregistered").wait(
        TargetGroupArn=arn, Targets=[{"Id": "10.0.0.6", "Port": 8080}], WaiterConfig=FAST
    )
    (gone,) = elbv2.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": "10.0.0.6", "Port": 8080}])["TargetHealthDescriptions"]
    assert (gone["TargetHealth"]["State"], gone["TargetHealth"]["Reason"]) == ("unused", "Target.NotRegistered")

    with pytest.raises(ClientError) as e:
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": "i-0123456789abcdef0"}])
    assert_error(e, "InvalidTarget")
    inst = make_tg(elbv2, f"inst-{uid}", target_type="instance")
    with pytest.raises(ClientError) as e:
        elbv2.register_targets(TargetGroupArn=inst["TargetGroupArn"], Targets=[{"Id": "10.0.0.1"}])
    assert_error(e, "InvalidTarget")
    elbv2.register_targets(TargetGroupArn=inst["TargetGroupArn"], Targets=[{"Id": "i-0123456789abcdef0", "Port": 32768}])


def test_tags_on_every_resource_type(elbv2, subnets, uid):
    lb = make_alb(elbv2, f"tag-{uid}", subnets)
    tg = make_tg(elbv2, f"tag-{uid}", Tags=[{"Key": "team", "Value": "web"}])
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )["Listeners"][0]
    rule = elbv2.create_rule(
        ListenerArn=listener["ListenerArn"], Priority=1,
        Conditions=[{"Field": "host-header", "Values": ["a.example.com"]}],
        Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}],
    )["Rules"][0]
    arns = [lb["LoadBalancerArn"], tg["TargetGroupArn"], listener["ListenerArn"], rule["RuleArn"]]
    elbv2.add_tags(ResourceArns=arns, Tags=[{"Key": "env", "Value": "test"}])
    described = {d["ResourceArn"]: {t["Key"]: t["Value"] for t in d["Tags"]} for d in elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"]}
    assert described[tg["TargetGroupArn"]] == {"team": "web", "env": "test"}
    assert all(described[a]["env"] == "test" for a in arns)
    elbv2.remove_tags(ResourceArns=[tg["TargetGroupArn"]], TagKeys=["team"])
    (d,) = elbv2.describe_tags(ResourceArns=[tg["TargetGroupArn"]])["TagDescriptions"]
    assert d["Tags"] == [{"Key": "env", "Value": "test"}]
    with pytest.raises(ClientError) as e:
        elbv2.add_tags(ResourceArns=[lb["LoadBalancerArn"]], Tags=[{"Key": "aws:reserved", "Value": "x"}])
    assert_error(e, "ValidationError")
    with pytest.raises(ClientError) as e:
        elbv2.add_tags(ResourceArns=[lb["LoadBalancerArn"]], Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    assert_error(e, "TooManyTags")
    limits = {l["Name"]: l["Max"] for l in elbv2.describe_account_limits()["Limits"]}
    assert limits["targets-per-target-group"] == "1000"
    assert elbv2.describe_ssl_policies()["SslPolicies"] == []


def test_bad_input_gets_elbs_error_codes(elbv2, subnets, uid):
    lb = make_alb(elbv2, f"bad-{uid}", subnets)
    tg = make_tg(elbv2, f"bad-{uid}")
    lb_arn, tg_arn = lb["LoadBalancerArn"], tg["TargetGroupArn"]
    forward = [{"Type": "forward", "TargetGroupArn": tg_arn}]
    ghost_lb = lb_arn.rsplit("/", 1)[0] + "/0000000000000000"
    ghost_tg = tg_arn.rsplit("/", 1)[0] + "/0000000000000000"
    listener = elbv2.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80, DefaultActions=forward)["Listeners"][0]
    ghost_listener = listener["ListenerArn"].rsplit("/", 1)[0] + "/0000000000000000"
    rule = elbv2.create_rule(
        ListenerArn=listener["ListenerArn"], Priority=5,
        Conditions=[{"Field": "path-pattern", "Values": ["/a"]}], Actions=forward,
    )["Rules"][0]
    cases = [
        ("DuplicateLoadBalancerName", lambda: elbv2.create_load_balancer(Name=f"bad-{uid}", Subnets=subnets[:2], Scheme="internal")),
        ("SubnetNotFound", lambda: elbv2.create_load_balancer(Name=f"x-{uid}", Subnets=["subnet-00000000", subnets[0]])),
        ("ValidationError", lambda: elbv2.create_load_balancer(Name=f"x-{uid}", Subnets=subnets[:1])),
        ("ValidationError", lambda: elbv2.create_load_balancer(Name="has_underscore")),
        ("LoadBalancerNotFound", lambda: elbv2.describe_load_balancers(Names=[f"nope-{uid}"])),
        ("LoadBalancerNotFound", lambda: elbv2.describe_load_balancer_attributes(LoadBalancerArn=ghost_lb)),
        ("DuplicateTargetGroupName", lambda: make_tg(elbv2, f"bad-{uid}", port=81)),
        ("UnsupportedProtocol", lambda: make_tg(elbv2, f"y-{uid}", protocol="HTTPS")),
        ("ValidationError", lambda: make_tg(elbv2, f"y-{uid}", target_type="lambda")),
        ("ValidationError", lambda: make_tg(elbv2, f"y-{uid}", HealthCheckIntervalSeconds=10, HealthCheckTimeoutSeconds=20)),
        ("ValidationError", lambda: make_tg(elbv2, f"y-{uid}", VpcId="vpc-00000000")),
        ("TargetGroupNotFound", lambda: elbv2.describe_target_groups(TargetGroupArns=[ghost_tg])),
        ("TargetGroupNotFound", lambda: elbv2.register_targets(TargetGroupArn=ghost_tg, Targets=[{"Id": "10.0.0.1"}])),
        ("DuplicateListener", lambda: elbv2.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80, DefaultActions=forward)),
        ("UnsupportedProtocol", lambda: elbv2.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTPS", Port=443, DefaultActions=forward)),
        ("IncompatibleProtocols", lambda: elbv2.create_listener(LoadBalancerArn=lb_arn, Protocol="TCP", Port=81, DefaultActions=forward)),
        ("TargetGroupNotFound", lambda: elbv2.create_listener(
            LoadBalancerArn=lb_arn, Protocol="HTTP", Port=82, DefaultActions=[{"Type": "forward", "TargetGroupArn": ghost_tg}])),
        ("LoadBalancerNotFound", lambda: elbv2.create_listener(LoadBalancerArn=ghost_lb, Protocol="HTTP", Port=80, DefaultActions=forward)),
        ("ListenerNotFound", lambda: elbv2.describe_listeners(ListenerArns=[ghost_listener])),
        ("ListenerNotFound", lambda: elbv2.delete_listener(ListenerArn=ghost_listener)),
        ("PriorityInUse", lambda: elbv2.create_rule(
            ListenerArn=listener["ListenerArn"], Priority=5, Conditions=[{"Field": "path-pattern", "Values": ["/b"]}], Actions=forward)),
        ("ValidationError", lambda: elbv2.create_rule(
            ListenerArn=listener["ListenerArn"], Priority=6, Conditions=[{"Field": "path-pattern", "Values": ["/1", "/2", "/3", "/4"]}],
            Actions=forward)),
        ("ValidationError", lambda: elbv2.create_rule(
            ListenerArn=listener["ListenerArn"], Priority=6, Conditions=[{"Field": "source-ip", "Values": ["10.0.0.1"]}], Actions=forward)),
        ("RuleNotFound", lambda: elbv2.describe_rules(RuleArns=[rule["RuleArn"].rsplit("/", 1)[0] + "/0000000000000000"])),
        ("PriorityInUse", lambda: elbv2.set_rule_priorities(RulePriorities=[
            {"RuleArn": rule["RuleArn"], "Priority": 7}, {"RuleArn": rule["RuleArn"].rsplit("/", 1)[0] + "/1111111111111111", "Priority": 7}])),
        ("ResourceInUse", lambda: elbv2.delete_target_group(TargetGroupArn=tg_arn)),
        ("InvalidTarget", lambda: elbv2.register_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "not-an-ip"}])),
        ("ValidationError", lambda: elbv2.describe_tags(ResourceArns=["arn:aws:ecs:us-east-1:1:cluster/x"])),
    ]
    for code, call in cases:
        with pytest.raises(ClientError) as e:
            call()
        assert_error(e, code)


def test_classic_elb_is_refused_clearly(server_env):
    classic = make_client(server_env, service="elb")
    with pytest.raises(ClientError) as e:
        classic.describe_load_balancers()
    resp = assert_error(e, "InvalidAction")
    assert "Classic Load Balancers" in resp["Error"]["Message"]
