"""ECS services registered in AWS Cloud Map, end to end on real parts: a `flotilla server` serving
its private DNS namespaces (`--dns-listen`), a real `flotilla agent` on the local Docker Engine
whose containers resolve through its DNS forwarder (`--dns-server`), driven with boto3 and the aws
CLI as an ECS user would. An awsvpc service behind A records, a bridge service behind SRV records
with dynamic host ports, a client task resolving a service by name, the answers through a rolling
deployment and a killed task (never the address of a STOPPED task), and ECS's refusals.

DNS is asked with a tiny hand-written client (`dns`) so that the test needs no `dig`."""

from __future__ import annotations

import random
import socket
import struct
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from agent_support import (
    TASK_LABEL,
    TASK_TIMEOUT,
    AgentProcess,
    docker,
    docker_available,
    free_port,
    poll,
    remove_task_containers,
)
from support import AwsCli, ServerProcess, make_client

WORKLOAD_IMAGE = "flotilla/workload:latest"
A, SRV = 1, 33


# ----------------------------------------------------------------------------------------------
# a tiny DNS client


def _name(msg: bytes, pos: int) -> tuple[str, int]:
    """The (possibly compressed) name at `pos` and the position after it."""
    labels, end = [], None
    while True:
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            end = pos + 2 if end is None else end
            pos = struct.unpack(">H", msg[pos : pos + 2])[0] & 0x3FFF
        elif n == 0:
            return ".".join(labels), (pos + 1 if end is None else end)
        else:
            labels.append(msg[pos + 1 : pos + 1 + n].decode())
            pos += 1 + n


def dns(port: int, name: str, qtype: int = A) -> tuple[int, list]:
    """Asks 127.0.0.1:`port` over UDP; the response code and the A addresses (or SRV (port,
    target) pairs) of the answer section."""
    qid = random.randrange(1 << 16)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(q, ("127.0.0.1", port))
        msg = s.recv(65535)
    assert msg[:2] == q[:2] and msg[2] & 0x80, msg
    an = struct.unpack(">H", msg[6:8])[0]
    pos = _name(msg, 12)[1] + 4
    out = []
    for _ in range(an):
        pos = _name(msg, pos)[1]
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", msg[pos : pos + 10])
        data = pos + 10
        if rtype == A:
            out.append(socket.inet_ntoa(msg[data : data + 4]))
        elif rtype == SRV:
            out.append((struct.unpack(">H", msg[data + 4 : data + 6])[0], _name(msg, data + 6)[0]))
        pos = data + length
    return msg[3] & 0x0F, out


# ----------------------------------------------------------------------------------------------
# the stack


def err(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    e = refused.value.response["Error"]
    return e["Code"], e["Message"]


class Stack:
    def diagnostics(self) -> str:
        return f"agent log:\n{self.agent.log_tail(30)}\nserver log:\n{self.server.stderr_tail(30)}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not docker_available():
        pytest.fail("these tests need a running Docker Engine (`docker info` failed)", pytrace=False)
    base = tmp_path_factory.mktemp("sd")
    s = Stack()
    s.cluster = f"sd-{uuid.uuid4().hex[:8]}"
    s.dns_port = free_port()
    s.server = ServerProcess(
        base / "server-data", base / "server.log", extra_args=("--dns-listen", f"127.0.0.1:{s.dns_port}")
    ).start()
    env = s.server.env
    s.ecs = make_client(env)
    s.sd = make_client(env, service="servicediscovery")
    s.data = boto3.session.Session().client(
        "servicediscovery",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, inject_host_prefix=False),
    )
    s.aws = AwsCli({**env, "AWS_DISABLE_HOST_PREFIX_INJECTION": "true"}, base / "cli")
    s.subnets = [n["SubnetId"] for n in make_client(env, service="ec2").describe_subnets()["Subnets"]][:1]
    s.agent = None
    try:
        s.ecs.create_cluster(clusterName=s.cluster)
        s.agent = AgentProcess(
            env, s.cluster, base / "agent", base / "agent.log", dns_server=f"127.0.0.1:{s.dns_port}"
        ).start()
        poll(
            lambda: len(s.ecs.list_container_instances(cluster=s.cluster)["containerInstanceArns"]) == 1,
            60,
            "the agent registered",
            s.diagnostics,
        )
        uid = uuid.uuid4().hex[:6]
        s.namespace = f"ns{uid}.local"
        op = s.sd.create_private_dns_namespace(Name=s.namespace, Vpc="vpc-1", CreatorRequestId=f"r-{uid}")
        done = poll(
            lambda: (lambda o: o if o["Status"] == "SUCCESS" else None)(
                s.sd.get_operation(OperationId=op["OperationId"])["Operation"]
            ),
            30,
            "the namespace created",
        )
        s.namespace_id = done["Targets"]["NAMESPACE"]
        yield s
    finally:
        for svc in s.ecs.list_services(cluster=s.cluster).get("serviceArns", []):
            try:
                s.ecs.delete_service(cluster=s.cluster, service=svc, force=True)
            except Exception:
                pass
        if s.agent:
            s.agent.stop()
        remove_task_containers(s.cluster)
        s.server.stop()


def registry(s, name: str, record: str) -> str:
    return s.sd.create_service(
        Name=name,
        NamespaceId=s.namespace_id,
        DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": record, "TTL": 5}]},
        HealthCheckCustomConfig={"FailureThreshold": 1},
    )["Service"]["Arn"]


def definition(s, family: str, mode: str, command: list[str] | None = None) -> str:
    port = {"containerPort": 8080, "protocol": "tcp"}
    if mode == "bridge":
        port["hostPort"] = 0
    c = {
        "name": "app",
        "image": WORKLOAD_IMAGE,
        "memory": 32,
        "cpu": 64,
        "essential": True,
        "command": command or ["serve", "8080", "--body", family],
        "portMappings": [port],
    }
    return s.ecs.register_task_definition(family=family, networkMode=mode, containerDefinitions=[c])[
        "taskDefinition"
    ]["taskDefinitionArn"]


def tasks(s, service: str) -> list[dict]:
    """Every task of `service`, running or stopped."""
    arns = []
    for status in ("RUNNING", "STOPPED"):
        arns += s.ecs.list_tasks(cluster=s.cluster, serviceName=service, desiredStatus=status)["taskArns"]
    return s.ecs.describe_tasks(cluster=s.cluster, tasks=arns)["tasks"] if arns else []


def ip_of(task: dict) -> str | None:
    for a in task.get("attachments", []):
        for d in a.get("details", []):
            if d["name"] == "privateIPv4Address":
                return d["value"]
    return None


def task_id(task: dict) -> str:
    return task["taskArn"].rsplit("/", 1)[1]


def running(s, service: str, n: int) -> list[dict]:
    return poll(
        lambda: (lambda t: t if len(t) == n else None)(
            [t for t in tasks(s, service) if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"]
        ),
        TASK_TIMEOUT,
        f"{n} RUNNING tasks of {service}",
        s.diagnostics,
    )


def a_records(s, service: str) -> tuple[int, list[str]]:
    """The response code and sorted addresses the server's DNS answers for `service`."""
    rcode, answer = dns(s.dns_port, f"{service}.{s.namespace}")
    return rcode, sorted(answer)


def discovered(s, service: str) -> dict[str, dict]:
    """DiscoverInstances (boto3): instance id -> attributes."""
    out = s.data.discover_instances(NamespaceName=s.namespace, ServiceName=service, MaxResults=100)
    return {i["InstanceId"]: i["Attributes"] for i in out["Instances"]}


def listed(s, registry_arn: str) -> dict[str, dict]:
    out = s.sd.list_instances(ServiceId=registry_arn.rsplit("/", 1)[1])
    return {i["Id"]: i["Attributes"] for i in out["Instances"]}


@pytest.fixture(scope="module")
def vpc(stack):
    """An awsvpc service of 2 tasks registered as A records: (service name, registry ARN)."""
    s, name = stack, f"vpc-{uuid.uuid4().hex[:6]}"
    arn = registry(s, name, "A")
    s.ecs.create_service(
        cluster=s.cluster,
        serviceName=name,
        taskDefinition=definition(s, name, "awsvpc"),
        desiredCount=2,
        networkConfiguration={"awsvpcConfiguration": {"subnets": s.subnets}},
        serviceRegistries=[{"registryArn": arn}],
        deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 200},
    )
    running(s, name, 2)
    poll(lambda: len(discovered(s, name)) == 2, 60, "2 instances discovered", s.diagnostics)
    return name, arn


# ----------------------------------------------------------------------------------------------
# tests


def test_an_awsvpc_service_is_registered_as_a_records(stack, vpc):
    s, (name, arn) = stack, vpc
    ts = running(s, name, 2)
    want = {task_id(t): t for t in ts}
    ips = {ip_of(t) for t in ts}
    assert len(ips) == 2 and None not in ips, ts

    found = listed(s, arn)
    assert set(found) == set(want), (found, want)
    for tid, attrs in found.items():
        t = want[tid]
        assert attrs["AWS_INSTANCE_IPV4"] == ip_of(t), attrs
        assert attrs["ECS_CLUSTER_NAME"] == s.cluster, attrs
        assert attrs["ECS_SERVICE_NAME"] == name, attrs
        assert attrs["ECS_TASK_DEFINITION_FAMILY"] == name, attrs
        assert attrs["REGION"] == s.server.env["AWS_DEFAULT_REGION"], attrs
        assert attrs["AVAILABILITY_ZONE"] == t["availabilityZone"], attrs
        assert attrs["EC2_INSTANCE_ID"].startswith("i-"), attrs
        assert "AWS_INSTANCE_PORT" not in attrs, attrs
    assert discovered(s, name) == found

    res = s.aws("servicediscovery", "discover-instances", "--namespace-name", s.namespace, "--service-name", name)
    assert res.ok, res.error
    cli = {i["InstanceId"]: i for i in res.data["Instances"]}
    assert set(cli) == set(want), cli
    assert all(i["HealthStatus"] == "HEALTHY" and i["NamespaceName"] == s.namespace for i in cli.values()), cli
    assert {i["Attributes"]["AWS_INSTANCE_IPV4"] for i in cli.values()} == ips

    res = s.aws("servicediscovery", "list-instances", "--service-id", arn.rsplit("/", 1)[1])
    assert res.ok, res.error
    assert {i["Id"]: i["Attributes"] for i in res.data["Instances"]} == found

    # The DNS server follows the store's watch: it may trail the API by a moment.
    poll(lambda: a_records(s, name) == (0, sorted(ips)), 10, "the two addresses in DNS")
    assert dns(s.dns_port, f"nobody.{s.namespace}")[0] == 3  # NXDOMAIN inside the namespace


def test_a_bridge_service_is_registered_as_srv_records_with_host_ports(stack):
    s, name = stack, f"br-{uuid.uuid4().hex[:6]}"
    arn = registry(s, name, "SRV")
    s.ecs.create_service(
        cluster=s.cluster,
        serviceName=name,
        taskDefinition=definition(s, name, "bridge"),
        desiredCount=2,
        serviceRegistries=[{"registryArn": arn, "containerName": "app", "containerPort": 8080}],
    )
    ts = running(s, name, 2)
    ports = {
        task_id(t): str(t["containers"][0]["networkBindings"][0]["hostPort"]) for t in ts
    }
    assert len(set(ports.values())) == 2, ports
    found = poll(lambda: (lambda d: d if len(d) == 2 else None)(discovered(s, name)), 60, "2 instances", s.diagnostics)
    assert {k: v["AWS_INSTANCE_PORT"] for k, v in found.items()} == ports, found
    assert all(v["AWS_INSTANCE_IPV4"] == "127.0.0.1" for v in found.values()), found  # the agent's --host-ip

    poll(lambda: len(dns(s.dns_port, f"{name}.{s.namespace}", SRV)[1]) == 2, 10, "two SRV records")
    rcode, answer = dns(s.dns_port, f"{name}.{s.namespace}", SRV)
    assert rcode == 0, rcode
    assert sorted(str(p) for p, _ in answer) == sorted(ports.values()), (answer, ports)
    # Each SRV target is a name of the instance that resolves to its host address.
    for _, target in answer:
        assert target.endswith(f"{name}.{s.namespace}"), answer
        assert dns(s.dns_port, target) == (0, ["127.0.0.1"]), target


def client_resolves(s, name: str) -> list[str]:
    """Runs a bridge task that resolves `name` through the agent's forwarder; what it printed."""
    family = f"client-{name}"
    td = definition(s, family, "bridge", ["resolve", f"{name}.{s.namespace}", "then", "sleep", "inf"])
    arn = s.ecs.run_task(cluster=s.cluster, taskDefinition=td)["tasks"][0]["taskArn"]
    try:
        poll(
            lambda: s.ecs.describe_tasks(cluster=s.cluster, tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING",
            TASK_TIMEOUT, "the client task RUNNING", s.diagnostics,
        )
        cid = poll(lambda: docker("ps", "-q", "--filter", f"label={TASK_LABEL}={arn}").split(), 30, "its container")[0]
        out = poll(lambda: docker("logs", cid).split(), 30, "the client's output")
        return sorted(out)
    finally:
        s.ecs.stop_task(cluster=s.cluster, task=arn)


class Watch:
    """Polls DescribeTasks, then DNS and DiscoverInstances, recording every answer that names a
    task DescribeTasks already called STOPPED, and a timeline of the DNS answers to tell how long
    after a task's startedAt/stoppedAt its address came into and went out of the answer."""

    def __init__(self, s, name: str):
        self.s, self.name = s, name
        self.violations: list = []
        self.seen: dict[str, dict] = {}  # task id -> last description
        self.samples: list[tuple[float, set[str]]] = []  # (time, DNS answer)

    def once(self) -> tuple[set[str], set[str], set[str]]:
        before = tasks(self.s, self.name)
        _, answer = dns(self.s.dns_port, f"{self.name}.{self.s.namespace}")
        now = time.time()
        found = discovered(self.s, self.name)
        self.samples.append((now, set(answer)))
        for t in before:
            self.seen[task_id(t)] = t
        # An address a live task holds again (IPAM reuse) is no witness of a stale answer.
        live_ips = {ip_of(t) for t in before if t["lastStatus"] != "STOPPED"}
        stopped_ips = {ip_of(t) for t in before if t["lastStatus"] == "STOPPED"} - live_ips
        for t in before:
            if t["lastStatus"] != "STOPPED":
                continue
            late = f"{now - t['stoppedAt'].timestamp():+.3f}s after stoppedAt ({t.get('stoppedReason')})"
            if ip_of(t) in set(answer) & stopped_ips:
                self.violations.append(("dns", task_id(t)[-8:], ip_of(t), late))
            if task_id(t) in found:
                self.violations.append(("discover", task_id(t)[-8:], ip_of(t), late))
        running_now = [t for t in before if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"]
        return set(answer), {ip_of(t) for t in running_now}, set(found)

    def until(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(*self.once()):
                return
        raise AssertionError(f"{what} not reached within {timeout:.0f}s\n{self.s.diagnostics()}")

    def presence(self, ip: str, started: float) -> tuple[float | None, float | None]:
        """When `ip` (of a task started at `started`) came into the answer (None if it was already
        there when watching began) and first went out of it after that."""
        i = 0
        absent_before = [k for k, (t, a) in enumerate(self.samples) if t < started and ip not in a]
        if absent_before:
            i = absent_before[-1] + 1
        elif not self.samples or ip not in self.samples[0][1]:
            return None, None
        into = next((k for k in range(i, len(self.samples)) if ip in self.samples[k][1]), None)
        if into is None:
            return None, None
        out = next((k for k in range(into, len(self.samples)) if ip not in self.samples[k][1]), None)
        return (self.samples[into][0] if absent_before else None), (self.samples[out][0] if out is not None else None)

    def report(self) -> None:
        print(f"\n{len(self.samples)} polls, {(self.samples[-1][0] - self.samples[0][0]):.1f}s")
        for tid, t in sorted(self.seen.items(), key=lambda kv: kv[1]["createdAt"]):
            ip, started = ip_of(t), t.get("startedAt")
            into, out = self.presence(ip, started.timestamp() if started else float("inf"))
            line = f"task {tid[-8:]} {ip}:"
            if started and into is not None:
                line += f" RUNNING -> in DNS {into - started.timestamp():+.2f}s"
            if t.get("stoppedAt") and out is not None:
                line += f" STOPPED -> out of DNS {out - t['stoppedAt'].timestamp():+.2f}s ({t.get('stoppedReason')})"
            if line.endswith(":"):
                continue  # nothing changed for this task while watching
            print(line)


def test_a_client_task_resolves_the_service_through_a_rolling_deployment(stack, vpc):
    s, (name, _) = stack, vpc
    first = running(s, name, 2)
    assert client_resolves(s, name) == sorted(ip_of(t) for t in first)

    w = Watch(s, name)
    w.once()
    v2 = definition(s, name, "awsvpc", ["serve", "8080", "--body", "v2"])
    s.ecs.update_service(cluster=s.cluster, service=name, taskDefinition=v2)

    def deployed(answer, running_ips, found):
        live = [t for t in tasks(s, name) if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING"]
        fresh = len(live) == 2 and all(t["taskDefinitionArn"] == v2 for t in live)
        old_gone = all(describe(s, t)["lastStatus"] == "STOPPED" for t in first)
        return fresh and old_gone and answer == running_ips and set(found) == {task_id(t) for t in live}

    w.until(deployed, TASK_TIMEOUT, "the new deployment in DNS and Cloud Map")
    for _ in range(10):  # a few more looks once things are quiet
        w.once()
    w.report()
    # ECS stopped these tasks itself: each left DNS and Cloud Map before DescribeTasks said STOPPED.
    assert w.violations == [], w.violations[:8]
    assert {describe(s, t)["stopCode"] for t in first} == {"ServiceSchedulerInitiated"}

    final = running(s, name, 2)
    final_ips = sorted(ip_of(t) for t in final)
    assert a_records(s, name) == (0, final_ips)
    assert set(discovered(s, name)) == {task_id(t) for t in final}
    assert client_resolves(s, name) == final_ips


def test_a_killed_task_leaves_dns_and_is_replaced(stack, vpc):
    """A task whose essential container dies stops on its own: its Cloud Map instance goes in the
    same write that records it STOPPED, so no answer names it once DescribeTasks shows it
    stopped; the address never comes back for that task, and the answers end equal to the
    replacement's and the survivor's addresses."""
    s, (name, _) = stack, vpc
    w = Watch(s, name)
    w.once()
    victim = running(s, name, 2)[0]
    (cid,) = docker("ps", "-q", "--filter", f"label={TASK_LABEL}={victim['taskArn']}",
                    "--filter", "label=com.flotilla.container-name=app").split()
    docker("kill", cid)

    def replaced(answer, running_ips, found):
        gone = describe(s, victim)["lastStatus"] == "STOPPED"
        return gone and len(running_ips) == 2 and answer == running_ips and len(found) == 2 and task_id(victim) not in found

    w.until(replaced, TASK_TIMEOUT, "the killed task replaced in DNS and Cloud Map")
    for _ in range(10):
        w.once()
    w.report()
    stopped = describe(s, victim)
    assert stopped["stopCode"] == "EssentialContainerExited", stopped
    late = [v for v in w.violations if v[1] == task_id(victim)[-8:]]
    at = {k: stopped[k].timestamp() for k in ("stoppingAt", "executionStoppedAt", "stoppedAt") if k in stopped}
    print("killed task: " + ", ".join(f"{k} {v - at['stoppedAt']:+.3f}s" for k, v in at.items()))
    assert late == [], f"answers named the killed task after it was STOPPED: {late}"
    assert w.violations == [], w.violations[:8]
    # Once gone from the answers, the killed task's address stays gone unless a new task holds it.
    into, out = w.presence(ip_of(victim), 0.0)
    assert out is not None, "the killed task's address never left the DNS answer"
    reused = {ip_of(t) for t in running(s, name, 2)}
    if ip_of(victim) not in reused:
        assert all(ip_of(victim) not in a for t, a in w.samples if t >= out), w.samples[-5:]

    final = running(s, name, 2)
    final_ips = sorted(ip_of(t) for t in final)
    assert a_records(s, name) == (0, final_ips)
    assert set(discovered(s, name)) == {task_id(t) for t in final}
    assert set(listed(s, vpc[1])) == {task_id(t) for t in final}
    assert client_resolves(s, name) == final_ips


def test_cloud_map_health_follows_the_container_health_check(stack):
    """A task registers as soon as it is RUNNING, UNHEALTHY until its health check passes, and
    DNS leaves it out while another instance is healthy; a task whose check starts failing is
    left out too, and replaced."""
    s, name = stack, f"hc-{uuid.uuid4().hex[:6]}"
    arn = registry(s, name, "A")
    td = s.ecs.register_task_definition(
        family=name,
        networkMode="awsvpc",
        containerDefinitions=[{
            "name": "app", "image": WORKLOAD_IMAGE, "memory": 32, "cpu": 64, "essential": True,
            # Healthy while /tmp/healthy exists; `fail-health --after 0` run beside it removes it.
            "command": ["fail-health", "--after", "3600"],
            "healthCheck": {"command": ["CMD", "/flotilla-workload", "healthcheck", "/tmp/healthy"],
                            "interval": 5, "timeout": 2, "retries": 1, "startPeriod": 0},
        }],
    )["taskDefinition"]["taskDefinitionArn"]
    s.ecs.create_service(
        cluster=s.cluster, serviceName=name, taskDefinition=td, desiredCount=2,
        networkConfiguration={"awsvpcConfiguration": {"subnets": s.subnets}},
        serviceRegistries=[{"registryArn": arn}],
    )
    sid = arn.rsplit("/", 1)[1]

    def health() -> dict[str, str]:
        return s.sd.get_instances_health_status(ServiceId=sid)["Status"]

    # Registered while RUNNING but not yet healthy: UNHEALTHY in Cloud Map.
    early = poll(lambda: (lambda h: h if h else None)(health()), TASK_TIMEOUT, "instances registered", s.diagnostics)
    assert "UNHEALTHY" in early.values(), early
    first = running(s, name, 2)
    both = sorted(ip_of(t) for t in first)
    poll(lambda: set(health().values()) == {"HEALTHY"} and len(health()) == 2, 60, "both HEALTHY", s.diagnostics)
    poll(lambda: a_records(s, name) == (0, both), 10, "both addresses in DNS")

    victim, other = first
    (cid,) = docker("ps", "-q", "--filter", f"label={TASK_LABEL}={victim['taskArn']}",
                    "--filter", "label=com.flotilla.container-name=app").split()
    docker("exec", "-d", cid, "/flotilla-workload", "fail-health", "--after", "0")
    w, seen = Watch(s, name), {"victim unhealthy": False, "newcomer unhealthy": False}

    def settled(answer, running_ips, found):
        # Health before and after a fresh DNS query: a victim only goes HEALTHY -> UNHEALTHY ->
        # deregistered, a newcomer only UNHEALTHY -> HEALTHY, so a state seen on both sides held
        # while DNS answered. The DNS server follows the store a moment behind: one retry.
        before = health()
        for attempt in range(2):
            ans = set(a_records(s, name)[1])
            after = health()
            sick = {i for i in before if before[i] == after.get(i) == "UNHEALTHY"}
            wrong = [i for i in sick if i in w.seen and ip_of(w.seen[i]) in ans] if other_healthy(after) else []
            if not wrong:
                break
            time.sleep(0.2)
        assert not wrong, ("an UNHEALTHY instance answered beside a healthy one", ans, after)
        seen["victim unhealthy"] |= task_id(victim) in sick
        newcomers = [i for i in after if i not in (task_id(victim), task_id(other))]
        seen["newcomer unhealthy"] |= any(i in sick for i in newcomers)
        return (newcomers and after.get(newcomers[0]) == "HEALTHY" and len(ans) == 2
                and ans == running_ips and ip_of(other) in ans)

    def other_healthy(h: dict[str, str]) -> bool:
        return h.get(task_id(other)) == "HEALTHY"

    w.until(settled, TASK_TIMEOUT, "the sick task replaced by a healthy one")
    w.report()
    print(f"health transitions observed: {seen}")
    assert seen["newcomer unhealthy"], seen
    assert w.violations == [], w.violations[:8]
    stopped = describe(s, victim)
    assert stopped["desiredStatus"] == "STOPPED", stopped
    assert task_id(victim) not in health()
    s.ecs.update_service(cluster=s.cluster, service=name, desiredCount=0)


def describe(s, task: dict) -> dict:
    return s.ecs.describe_tasks(cluster=s.cluster, tasks=[task["taskArn"]])["tasks"][0]


def test_ecs_refuses_bad_service_registries(stack):
    s, uid = stack, uuid.uuid4().hex[:6]
    a_arn, srv_arn = registry(s, f"ra-{uid}", "A"), registry(s, f"rs-{uid}", "SRV")
    vpc_td, bridge_td = definition(s, f"rv-{uid}", "awsvpc"), definition(s, f"rb-{uid}", "bridge")
    net = {"awsvpcConfiguration": {"subnets": s.subnets}}

    def create(td, regs, **extra):
        return err(lambda: s.ecs.create_service(
            cluster=s.cluster, serviceName=f"bad-{uid}", taskDefinition=td, desiredCount=1,
            serviceRegistries=regs, **extra,
        ))

    e = create(vpc_td, [{"registryArn": a_arn}, {"registryArn": a_arn}], networkConfiguration=net)
    assert e == ("InvalidParameterException", "serviceRegistries can have at most 1 items."), e
    unknown = a_arn.rsplit("/", 1)[0] + "/srv-0000000000000000"
    e = create(vpc_td, [{"registryArn": unknown}], networkConfiguration=net)
    assert e == ("InvalidParameterException", f"The service registry {unknown} does not exist."), e
    e = create(bridge_td, [{"registryArn": a_arn, "containerName": "app", "containerPort": 8080}])
    assert e == ("InvalidParameterException",
                 f"The service registry {a_arn} has A or AAAA records, which need the awsvpc network mode; use SRV "
                 "records with the bridge network mode."), e
    e = create(vpc_td, [{"registryArn": srv_arn}], networkConfiguration=net)
    assert e == ("InvalidParameterException",
                 "The service registry has SRV records: specify either a port or a containerName and containerPort."), e
    e = create(bridge_td, [{"registryArn": srv_arn}])
    assert e == ("InvalidParameterException",
                 "When using the bridge network mode, a service registry must specify a containerName and "
                 "containerPort combination from the task definition."), e
    assert all(f"bad-{uid}" not in a for a in s.ecs.list_services(cluster=s.cluster)["serviceArns"])
