"""ECS services behind Flotilla's own load balancer, on real parts: a `flotilla server`, a real
`flotilla agent` on the local Docker Engine and a real `flotilla lb` node, driven with boto3 and
the aws CLI as an ECS user would. An ALB with path and host rules in front of two bridge services
(dynamic host ports), an awsvpc service behind `ip` targets, an NLB (TCP), targets' health as they
start, fail and drain, a rolling deployment and a scale-in under steady traffic with no failed
request, a target that fails its health check replaced by the service, and ECS's refusals."""

from __future__ import annotations

import http.client
import re
import subprocess
import threading
import time
import uuid

import pytest

from agent_support import TASK_TIMEOUT, AgentProcess, docker_available, free_port, poll, remove_task_containers
from support import AwsCli, ServerProcess, flotilla_bin, make_client
from botocore.exceptions import ClientError

WORKLOAD_IMAGE = "flotilla/workload:latest"


def err(call) -> tuple[str, str]:
    """The error code and message a boto3 call was refused with."""
    with pytest.raises(ClientError) as refused:
        call()
    e = refused.value.response["Error"]
    return e["Code"], e["Message"]
HEALTH = {
    "HealthCheckIntervalSeconds": 5,
    "HealthCheckTimeoutSeconds": 2,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 2,
}


class LbNode:
    """One real `flotilla lb` child process joined with a token of its own."""

    def __init__(self, env: dict[str, str], base):
        self.env, self.base, self.proc = env, base, None

    def start(self) -> "LbNode":
        token = subprocess.run(
            [flotilla_bin(), "token", "create", "--lb"], env=self.env, capture_output=True, text=True, check=True
        ).stdout.strip()
        log = open(self.base / "lb.log", "ab")
        self.proc = subprocess.Popen(
            [
                flotilla_bin(),
                "lb",
                "--server",
                self.env["AWS_ENDPOINT_URL"],
                "--token",
                token,
                "--data-dir",
                str(self.base / "lb-data"),
                "--bind",
                "127.0.0.1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.base / "lb.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no lb log>"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Stack:
    def __init__(self, base):
        self.base = base
        self.cluster = f"lb-{uuid.uuid4().hex[:8]}"

    def diagnostics(self) -> str:
        return (
            f"agent log:\n{self.agent.log_tail(30)}\nlb log:\n{self.lb.log_tail(30)}\n"
            f"server log:\n{self.server.stderr_tail(30)}"
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not docker_available():
        pytest.fail("these tests need a running Docker Engine (`docker info` failed)", pytrace=False)
    base = tmp_path_factory.mktemp("lb")
    s = Stack(base)
    s.server = ServerProcess(base / "server-data", base / "server.log").start()
    s.ecs = make_client(s.server.env)
    s.elb = make_client(s.server.env, service="elbv2")
    s.aws = AwsCli(s.server.env, base / "cli")
    s.agent = s.lb = None
    try:
        s.ecs.create_cluster(clusterName=s.cluster)
        s.agent = AgentProcess(s.server.env, s.cluster, base / "agent", base / "agent.log").start()
        s.lb = LbNode(s.server.env, base).start()
        poll(
            lambda: len(s.ecs.list_container_instances(cluster=s.cluster)["containerInstanceArns"]) == 1,
            60,
            "the agent registered",
            s.diagnostics,
        )
        yield s
    finally:
        for svc in s.ecs.list_services(cluster=s.cluster).get("serviceArns", []) if s.server else []:
            try:
                s.ecs.delete_service(cluster=s.cluster, service=svc, force=True)
            except Exception:
                pass
        if s.lb:
            s.lb.stop()
        if s.agent:
            s.agent.stop()
        remove_task_containers(s.cluster)
        s.server.stop()


def target_group(s, name: str, protocol: str = "HTTP", target_type: str = "instance", **extra) -> str:
    args = {"Name": name, "Protocol": protocol, "Port": 80, "TargetType": target_type}
    args.update(HEALTH if protocol == "HTTP" else {"HealthCheckIntervalSeconds": 5, "HealthCheckTimeoutSeconds": 2})
    args.update(extra)
    arn = s.elb.create_target_group(**args)["TargetGroups"][0]["TargetGroupArn"]
    s.elb.modify_target_group_attributes(
        TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "3"}]
    )
    return arn


def load_balancer(s, name: str, kind: str = "application") -> dict:
    lb = s.elb.create_load_balancer(Name=name, Type=kind, Subnets=subnets(s))["LoadBalancers"][0]
    return lb


def subnets(s) -> list[str]:
    ec2 = make_client(s.server.env, service="ec2")
    return [n["SubnetId"] for n in ec2.describe_subnets()["Subnets"]][:2]


def definition(s, family: str, body: str, mode: str = "bridge") -> str:
    port = {"containerPort": 8080, "protocol": "tcp"}
    if mode == "bridge":
        port["hostPort"] = 0
    c = {
        "name": "app",
        "image": WORKLOAD_IMAGE,
        "memory": 32,
        "cpu": 64,
        "essential": True,
        "command": ["serve", "8080", "--body", body],
        "portMappings": [port],
    }
    return s.ecs.register_task_definition(family=family, networkMode=mode, containerDefinitions=[c])[
        "taskDefinition"
    ]["taskDefinitionArn"]


def service(s, name: str, td: str, tg: str, count: int, **extra) -> None:
    s.ecs.create_service(
        cluster=s.cluster,
        serviceName=name,
        taskDefinition=td,
        desiredCount=count,
        loadBalancers=[{"targetGroupArn": tg, "containerName": "app", "containerPort": 8080}],
        **extra,
    )


def healthy_targets(s, tg: str) -> list[dict]:
    return [
        d for d in s.elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        if d["TargetHealth"]["State"] == "healthy"
    ]


def wait_healthy(s, tg: str, n: int) -> list[dict]:
    return poll(lambda: (lambda h: h if len(h) == n else None)(healthy_targets(s, tg)), TASK_TIMEOUT * 2,
                f"{n} healthy targets in {tg}", s.diagnostics)


def get(port: int, path: str = "/", host: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def events(s, name: str) -> list[str]:
    svc = s.ecs.describe_services(cluster=s.cluster, services=[name])["services"][0]
    return [e["message"] for e in svc["events"]]


def test_an_alb_with_path_and_host_rules_in_front_of_two_bridge_services(stack):
    s, uid = stack, uuid.uuid4().hex[:6]
    web_tg, api_tg = target_group(s, f"web-{uid}"), target_group(s, f"api-{uid}")
    lb = load_balancer(s, f"alb-{uid}")
    port = free_port()
    listener = s.elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=port,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": web_tg}],
    )["Listeners"][0]["ListenerArn"]
    s.elb.create_rule(
        ListenerArn=listener,
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": api_tg}],
    )
    res = s.aws(
        "elbv2", "create-rule", "--listener-arn", listener, "--priority", "20",
        "--conditions", "Field=host-header,Values=api.example.com",
        "--actions", f"Type=forward,TargetGroupArn={api_tg}",
    )
    assert res.ok, res.error
    service(s, f"web-{uid}", definition(s, f"web-{uid}", "web"), web_tg, 2)
    service(s, f"api-{uid}", definition(s, f"api-{uid}", "api"), api_tg, 1)
    web_targets = wait_healthy(s, web_tg, 2)
    wait_healthy(s, api_tg, 1)
    s.elb.get_waiter("target_in_service").wait(TargetGroupArn=web_tg, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    # Dynamic host ports: two targets on the one instance, on two ports Docker chose.
    assert len({t["Target"]["Port"] for t in web_targets}) == 2, web_targets
    assert all(t["Target"]["Id"].startswith("i-") for t in web_targets), web_targets
    poll(lambda: s.elb.describe_load_balancers(LoadBalancerArns=[lb["LoadBalancerArn"]])["LoadBalancers"][0]["State"]["Code"] == "active",
         30, "the load balancer active", s.diagnostics)
    s.elb.get_waiter("load_balancer_available").wait(LoadBalancerArns=[lb["LoadBalancerArn"]], WaiterConfig={"Delay": 1})

    assert get(port, "/") == (200, "web")
    assert get(port, "/api/users") == (200, "api")
    assert get(port, "/", host="api.example.com") == (200, "api")
    assert get(port, "/apix") == (200, "web")
    # The DNS name works with curl, which resolves *.localhost itself.
    out = subprocess.run(["curl", "-s", f"http://{lb['DNSName']}:{port}/api/x"], capture_output=True, text=True, timeout=10)
    assert out.stdout == "api", out
    # One event per registrar pass: the two web tasks may register in one ("registered 2 targets").
    registered = re.compile(rf"registered [12] targets in \(target-group {re.escape(web_tg)}\)")
    poll(lambda: any(registered.search(e) for e in events(s, f"web-{uid}")),
         30, "the registration event", s.diagnostics)
    s.ecs.get_waiter("services_stable").wait(cluster=s.cluster, services=[f"web-{uid}", f"api-{uid}"], WaiterConfig={"Delay": 2})


class Load(threading.Thread):
    """Steady keep-alive traffic through the load balancer, counting what failed."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.ok, self.failed, self.stop_flag = port, 0, [], threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop_flag.is_set():
            try:
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failed.append((r.status, body[:100]))
            except Exception as e:  # a reset or refused connection is a failed request too
                self.failed.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            time.sleep(0.01)
        conn.close()


def test_a_rolling_deployment_and_a_scale_in_under_steady_load_fail_no_request(stack):
    s, uid = stack, uuid.uuid4().hex[:6]
    tg = target_group(s, f"roll-{uid}")
    lb = load_balancer(s, f"roll-{uid}")
    port = free_port()
    s.elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    name = f"roll-{uid}"
    service(s, name, definition(s, name, "v1"), tg, 2)
    wait_healthy(s, tg, 2)
    load = Load(port)
    load.start()
    try:
        poll(lambda: load.ok > 20, 30, "traffic flowing")
        s.ecs.update_service(cluster=s.cluster, service=name, taskDefinition=definition(s, name, "v2"))
        s.ecs.get_waiter("services_stable").wait(cluster=s.cluster, services=[name], WaiterConfig={"Delay": 2, "MaxAttempts": 90})
        poll(lambda: get(port)[1] == "v2" and all(get(port)[1] == "v2" for _ in range(5)), 60, "only v2 answers")
        s.ecs.update_service(cluster=s.cluster, service=name, desiredCount=1)
        poll(lambda: len(s.elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]) == 1,
             60, "one target left", s.diagnostics)
        time.sleep(2)
    finally:
        load.stop_flag.set()
        load.join(15)
    assert load.failed == [], (load.failed[:5], load.ok)
    assert load.ok > 50
    said = events(s, name)
    assert any("has begun draining connections on" in e for e in said), said
    assert any(f"deregistered 1 targets in (target-group {tg})" in e for e in said), said


def test_an_awsvpc_service_behind_ip_targets(stack):
    s, uid = stack, uuid.uuid4().hex[:6]
    tg = target_group(s, f"ip-{uid}", target_type="ip")
    lb = load_balancer(s, f"ip-{uid}")
    port = free_port()
    s.elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    name = f"ip-{uid}"
    net = {"awsvpcConfiguration": {"subnets": subnets(s)[:1]}}
    service(s, name, definition(s, name, "vpc", mode="awsvpc"), tg, 1, networkConfiguration=net)
    (target,) = wait_healthy(s, tg, 1)
    task = s.ecs.describe_tasks(cluster=s.cluster, tasks=s.ecs.list_tasks(cluster=s.cluster, serviceName=name)["taskArns"])["tasks"][0]
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert target["Target"] == {"Id": details["privateIPv4Address"], "Port": 8080, "AvailabilityZone": task["availabilityZone"]} or (
        target["Target"]["Id"] == details["privateIPv4Address"] and target["Target"]["Port"] == 8080
    ), (target, details)
    assert get(port) == (200, "vpc")


def test_a_network_load_balancer_carries_tcp(stack):
    s, uid = stack, uuid.uuid4().hex[:6]
    tg = target_group(s, f"tcp-{uid}", protocol="TCP")
    lb = load_balancer(s, f"nlb-{uid}", kind="network")
    assert lb["Type"] == "network"
    port = free_port()
    s.elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TCP", Port=port,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    service(s, f"tcp-{uid}", definition(s, f"tcp-{uid}", "over tcp"), tg, 1)
    wait_healthy(s, tg, 1)
    assert get(port) == (200, "over tcp")


def test_a_target_that_fails_its_health_check_is_replaced(stack):
    s, uid = stack, uuid.uuid4().hex[:6]
    # The workload answers 200; a matcher of 201 fails every check, as a broken build would.
    tg = target_group(s, f"sick-{uid}", Matcher={"HttpCode": "201"})
    lb = load_balancer(s, f"sick-{uid}")
    s.elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=free_port(),
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    name = f"sick-{uid}"
    # The grace period keeps the task (and its unhealthy target) in place long enough to look at.
    service(s, name, definition(s, name, "sick"), tg, 1, healthCheckGracePeriodSeconds=20)

    def unhealthy():
        d = s.elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        sick = [x for x in d if x["TargetHealth"]["State"] == "unhealthy"]
        return sick or None

    (desc, *_) = poll(unhealthy, TASK_TIMEOUT * 2, "an unhealthy target", s.diagnostics)
    assert desc["TargetHealth"]["Reason"] == "Target.ResponseCodeMismatch", desc
    assert desc["TargetHealth"]["Description"] == "Health checks failed with these codes: [200]", desc
    # Within the grace period the task stays.
    assert s.ecs.list_tasks(cluster=s.cluster, serviceName=name, desiredStatus="STOPPED")["taskArns"] == []
    said = poll(
        lambda: (lambda e: e if any("is unhealthy in (target-group" in m for m in e) else None)(events(s, name)),
        60, "the unhealthy event", s.diagnostics,
    )
    assert any(f"due to (reason Health checks failed with these codes: [200])" in m for m in said), said
    stopped = poll(
        lambda: s.ecs.list_tasks(cluster=s.cluster, serviceName=name, desiredStatus="STOPPED")["taskArns"] or None,
        60, "the task replaced", s.diagnostics,
    )
    t = s.ecs.describe_tasks(cluster=s.cluster, tasks=stopped[:1])["tasks"][0]
    assert t["stoppedReason"] == f"Task failed ELB health checks in (target-group {tg})", t["stoppedReason"]
    s.ecs.update_service(cluster=s.cluster, service=name, desiredCount=0)


def test_services_refuse_target_groups_and_containers_as_ecs_does(stack):
    s, uid = stack, uuid.uuid4().hex[:6]
    lonely = target_group(s, f"lonely-{uid}")
    td = definition(s, f"bad-{uid}", "x")
    lbs = lambda tg, port=8080, name="app": [{"targetGroupArn": tg, "containerName": name, "containerPort": port}]
    e = err(lambda: s.ecs.create_service(cluster=s.cluster, serviceName=f"a-{uid}", taskDefinition=td, desiredCount=1, loadBalancers=lbs(lonely)))
    assert e == ("InvalidParameterException", f"The target group with targetGroupArn {lonely} does not have an associated load balancer."), e

    used = target_group(s, f"used-{uid}")
    lb = load_balancer(s, f"bad-{uid}")
    s.elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=free_port(),
                          DefaultActions=[{"Type": "forward", "TargetGroupArn": used}])
    e = err(lambda: s.ecs.create_service(cluster=s.cluster, serviceName=f"b-{uid}", taskDefinition=td, desiredCount=1, loadBalancers=lbs(used, 9999)))
    assert e == ("InvalidParameterException", "The container app did not have a container port 9999 defined."), e
    e = err(lambda: s.ecs.create_service(cluster=s.cluster, serviceName=f"c-{uid}", taskDefinition=td, desiredCount=1, loadBalancers=lbs(used, name="nope")))
    assert e == ("InvalidParameterException", "The container nope does not exist in the task definition."), e
    vpc_td = definition(s, f"badvpc-{uid}", "x", mode="awsvpc")
    net = {"awsvpcConfiguration": {"subnets": subnets(s)[:1]}}
    e = err(lambda: s.ecs.create_service(cluster=s.cluster, serviceName=f"d-{uid}", taskDefinition=vpc_td, desiredCount=1, loadBalancers=lbs(used), networkConfiguration=net))
    assert e[0] == "InvalidParameterException"
    assert e[1] == (f"The provided target group {used} has target type instance, which is incompatible with the awsvpc "
                    "network mode specified in the task definition."), e
    e = err(lambda: s.ecs.create_service(cluster=s.cluster, serviceName=f"e-{uid}", taskDefinition=td, desiredCount=1,
                                         loadBalancers=[{"containerName": "app", "containerPort": 8080}]))
    assert e == ("InvalidParameterException", "Target Group ARN and Load Balancer Name cannot both be blank."), e
    missing = used.rsplit("/", 1)[0] + "/0000000000000000"
    e = err(lambda: s.ecs.create_service(cluster=s.cluster, serviceName=f"f-{uid}", taskDefinition=td, desiredCount=1, loadBalancers=lbs(missing)))
    assert e == ("InvalidParameterException", f"The target group with targetGroupArn {missing} does not exist."), e
    # Nothing half-written: none of the refused services exists.
    assert s.ecs.list_services(cluster=s.cluster)["serviceArns"] == [] or all(
        f"-{uid}" not in a for a in s.ecs.list_services(cluster=s.cluster)["serviceArns"]
    )
