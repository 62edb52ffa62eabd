"""The FARGATE half of the ECS Spot workshop on real parts: a `flotilla server` whose Auto Scaling
groups launch hollow hosts (for the workshop's EC2 capacity providers), one real `flotilla agent
--fargate` pool host running every Fargate task in its own gVisor sandbox on the local Docker
Engine, and one real EC2 agent. With the aws CLI and boto3: FARGATE and FARGATE_SPOT attached to a
cluster that also has an EC2 capacity provider, a Fargate task definition, a service of 4 tasks
split FARGATE 3 / FARGATE_SPOT 1, each with its own address in its subnet, a look from inside a
task (gVisor's kernel, its own metadata), a Spot interruption replaced by the service, every
refused definition with ECS's error, and an EC2 awsvpc task addressed from its subnet too."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import subprocess
import uuid

import pytest

from agent_support import (
    TASK_TIMEOUT,
    AgentProcess,
    docker,
    docker_available,
    docker_inspect,
    poll,
    remove_task_containers,
)
from support import AwsCli, ServerProcess, flotilla_bin, make_client
from workshop_support import err, fill, ok


def runsc_registered() -> bool:
    return "runsc" in docker("info", "--format", "{{json .Runtimes}}")


class Stack:
    def __init__(self, base):
        self.base = base
        self.cluster = f"EcsSpotWorkshop-{uuid.uuid4().hex[:6]}"
        self.server: ServerProcess | None = None
        self.pool: AgentProcess | None = None
        self.ec2: AgentProcess | None = None

    def diagnostics(self) -> str:
        parts = []
        for name, a in (("pool agent", self.pool), ("EC2 agent", self.ec2)):
            if a:
                parts.append(f"{name} log:\n{a.log_tail(40)}")
        if self.server:
            parts.append(f"server log:\n{self.server.stderr_tail(30)}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not docker_available():
        pytest.fail("these tests need a running Docker Engine (`docker info` failed)", pytrace=False)
    if not runsc_registered():
        pytest.fail("Fargate tests need gVisor's runsc registered with Docker: run scripts/setup-gvisor.sh", pytrace=False)
    base = tmp_path_factory.mktemp("fargate")
    s = Stack(base)
    s.server = ServerProcess(
        base / "server-data", base / "server.log", extra_args=("--provisioner", "simulate", "--scaling-period-seconds", "2")
    ).start()
    s.ecs = make_client(s.server.env)
    s.ec2_api = make_client(s.server.env, service="ec2")
    s.aws = AwsCli(s.server.env, base / "cli")
    try:
        s.cluster_arn = s.ecs.create_cluster(clusterName=s.cluster)["cluster"]["clusterArn"]
        s.pool = AgentProcess(s.server.env, "", base / "pool-agent", base / "pool-agent.log", fargate=True).start()
        s.ec2 = AgentProcess(s.server.env, s.cluster, base / "ec2-agent", base / "ec2-agent.log").start()
        poll(
            lambda: len(s.ecs.list_container_instances(cluster=s.cluster)["containerInstanceArns"]) == 1,
            60,
            "the EC2 agent registered",
            s.diagnostics,
        )
        yield s
    finally:
        problems = []
        for what, proc in (("pool agent", s.pool), ("EC2 agent", s.ec2)):
            if proc and proc.proc:
                rc = proc.stop()
                if rc != 0:
                    problems.append(f"flotilla {what} exited {rc} after SIGTERM\n{proc.log_tail()}")
        # Agents leave their containers running when they stop; a sandbox left on a subnet's
        # network would keep its address from the next server's tasks.
        remove_task_containers(s.cluster)
        rc = s.server.stop()
        if rc != 0:
            problems.append(f"flotilla server exited {rc}\n{s.server.stderr_tail()}")
        assert not problems, "\n".join(problems)


def describe(stack, arns: list[str]) -> list[dict]:
    out = []
    for i in range(0, len(arns), 100):
        out += stack.ecs.describe_tasks(cluster=stack.cluster, tasks=arns[i : i + 100])["tasks"]
    return out


def eni(task: dict) -> dict:
    att = [a for a in task.get("attachments", []) if a["type"] == "ElasticNetworkInterface"]
    assert len(att) == 1, task.get("attachments")
    return {"status": att[0]["status"], **{d["name"]: d["value"] for d in att[0]["details"]}}


def service_tasks(stack, service: str, desired: str = "RUNNING") -> list[dict]:
    arns = stack.ecs.list_tasks(cluster=stack.cluster, serviceName=service, desiredStatus=desired)["taskArns"]
    return describe(stack, arns) if arns else []


def flotilla(env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLOTILLA_"))}
    clean.update(env)
    return subprocess.run([flotilla_bin(), *args], env=clean, capture_output=True, text=True, timeout=60)


def first_lines(container_id: str, n: int) -> list[str]:
    def check():
        lines = docker("logs", container_id).splitlines()
        return lines[:n] if len(lines) >= n else None

    return poll(check, TASK_TIMEOUT, f"{n} lines from {container_id}")


def test_the_fargate_half_of_the_workshop(stack, tmp_path):
    aws = stack.aws
    subnets = {s["SubnetId"]: s for s in ok(aws("ec2", "describe-subnets"))["Subnets"]}
    sg = ok(aws("ec2", "describe-security-groups"))["SecurityGroups"][0]["GroupId"]

    # The workshop's EC2 side: an on-demand group (hollow hosts) and its capacity provider.
    user_data = base64.b64encode(f"#!/bin/bash\necho ECS_CLUSTER={stack.cluster} >> /etc/ecs/ecs.config\n".encode())
    lt = ok(aws("ec2", "create-launch-template", "--launch-template-name", f"lt-{stack.cluster}",
                "--launch-template-data", json.dumps({"InstanceType": "m5.large", "UserData": user_data.decode()})))
    asg = f"{stack.cluster}-ASG-OD"
    spec = fill("asg.json", tmp_path / "asg.json", ASG_NAME=asg, LAUNCH_TEMPLATE_ID=lt["LaunchTemplate"]["LaunchTemplateId"],
                OD_PERCENTAGE=100, SUBNETS=",".join(subnets))
    ok(aws("autoscaling", "create-auto-scaling-group", "--cli-input-json", spec))
    asg_arn = ok(aws("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", asg))[
        "AutoScalingGroups"][0]["AutoScalingGroupARN"]
    cp = f"CP-OD-{stack.cluster[-6:]}"
    ok(aws("ecs", "create-capacity-provider", "--cli-input-json",
           fill("capacity-provider.json", tmp_path / "cp.json", CP_NAME=cp, ASG_ARN=asg_arn)))

    # Module 2: FARGATE and FARGATE_SPOT join the cluster beside the EC2 provider.
    cluster = ok(aws("ecs", "put-cluster-capacity-providers", "--cluster", stack.cluster,
                     "--capacity-providers", "FARGATE", "FARGATE_SPOT", cp,
                     "--default-capacity-provider-strategy", f"capacityProvider={cp},weight=1"))["cluster"]
    assert set(cluster["capacityProviders"]) == {"FARGATE", "FARGATE_SPOT", cp}
    # A strategy never mixes Fargate with Auto Scaling group providers.
    err(aws("ecs", "run-task", "--cluster", stack.cluster, "--task-definition", "nope",
            "--capacity-provider-strategy", "capacityProvider=FARGATE,weight=1", f"capacityProvider={cp},weight=1"),
        "InvalidParameterException")

    family = f"webapp-fargate-task-{stack.cluster[-6:]}"
    td = ok(aws("ecs", "register-task-definition", "--cli-input-json",
                fill("webapp-fargate-task.json", tmp_path / "td.json", FAMILY=family)))["taskDefinition"]
    assert "FARGATE" in td["compatibilities"]
    network = f"awsvpcConfiguration={{subnets=[{','.join(subnets)}],securityGroups=[{sg}],assignPublicIp=DISABLED}}"
    svc = ok(aws("ecs", "create-service", "--capacity-provider-strategy", "capacityProvider=FARGATE,weight=3",
                 "capacityProvider=FARGATE_SPOT,weight=1", "--cluster", stack.cluster,
                 "--service-name", "webapp-fargate-service-split", "--task-definition", f"{family}:1",
                 "--desired-count", "4", "--network-configuration", network))["service"]
    assert [i["capacityProvider"] for i in svc["capacityProviderStrategy"]] == ["FARGATE", "FARGATE_SPOT"]
    res = aws("ecs", "wait", "services-stable", "--cluster", stack.cluster, "--services", "webapp-fargate-service-split",
              timeout=600)
    assert res.ok, f"{res.error}\n{stack.diagnostics()}"

    tasks = service_tasks(stack, "webapp-fargate-service-split")
    assert len(tasks) == 4 and all(t["lastStatus"] == "RUNNING" for t in tasks), tasks
    by = sorted(t["capacityProviderName"] for t in tasks)
    assert by == ["FARGATE", "FARGATE", "FARGATE", "FARGATE_SPOT"], by
    addresses = set()
    for t in tasks:
        assert "containerInstanceArn" not in t, t
        assert t["launchType"] == "FARGATE" and t["platformVersion"] == "1.4.0", t
        e = eni(t)
        assert e["status"] == "ATTACHED", e
        subnet = subnets[e["subnetId"]]
        assert ipaddress.ip_address(e["privateIPv4Address"]) in ipaddress.ip_network(subnet["CidrBlock"]), (e, subnet)
        assert t["availabilityZone"] == subnet["AvailabilityZone"], t
        addresses.add(e["privateIPv4Address"])
    assert len(addresses) == 4, addresses
    # The pool host is in no cluster: the EC2 agent is this cluster's only container instance.
    assert len(stack.ecs.list_container_instances(cluster=stack.cluster)["containerInstanceArns"]) == 1

    # From inside a task: gVisor's kernel, not the host's, and its own task metadata.
    t = tasks[0]
    app = t["containers"][0]
    info = docker_inspect(app["runtimeId"])
    assert info["HostConfig"]["Runtime"] == "runsc", info["HostConfig"]
    kernel, metadata = first_lines(app["runtimeId"], 2)
    host_kernel = open("/proc/version").read().strip()
    assert kernel.startswith("Linux version 4.4.0") and kernel != host_kernel, (kernel, host_kernel)
    meta = json.loads(metadata)
    assert meta["TaskARN"] == t["taskArn"] and meta["LaunchType"] == "FARGATE", meta
    assert meta["AvailabilityZone"] == t["availabilityZone"], meta
    assert meta["Containers"][0]["Networks"][0]["IPv4Addresses"] == [eni(t)["privateIPv4Address"]], meta

    # A Spot interruption: the FARGATE_SPOT task is warned and stopped; the service replaces it.
    spot = next(t for t in tasks if t["capacityProviderName"] == "FARGATE_SPOT")
    out = flotilla(stack.server.env, "spot", "interrupt", "--task", spot["taskArn"], "--warning-seconds", "30")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [spot["taskArn"]], out.stdout
    warned = describe(stack, [spot["taskArn"]])[0]
    assert warned["desiredStatus"] == "STOPPED" and warned["stopCode"] == "SpotInterruption", warned
    res = aws("ecs", "wait", "tasks-stopped", "--cluster", stack.cluster, "--tasks", spot["taskArn"], timeout=600)
    assert res.ok, res.error
    gone = describe(stack, [spot["taskArn"]])[0]
    assert gone["stoppedReason"] == "Your Spot Task was interrupted.", gone
    assert eni(gone)["status"] == "DELETED", gone

    def replaced():
        live = [t for t in service_tasks(stack, "webapp-fargate-service-split") if t["lastStatus"] == "RUNNING"]
        spots = [t for t in live if t["capacityProviderName"] == "FARGATE_SPOT"]
        return len(live) == 4 and len(spots) == 1 and spots[0]["taskArn"] != spot["taskArn"]

    poll(replaced, TASK_TIMEOUT, "a replacement FARGATE_SPOT task", stack.diagnostics)

    # Cleanup, as the workshop does it.
    ok(aws("ecs", "update-service", "--cluster", stack.cluster, "--service", "webapp-fargate-service-split",
           "--desired-count", "0"))
    ok(aws("ecs", "delete-service", "--cluster", stack.cluster, "--service", "webapp-fargate-service-split"))


def test_refused_fargate_definitions_get_ecs_errors(stack):
    def register(**td):
        base = {"family": f"bad-{uuid.uuid4().hex[:6]}", "requiresCompatibilities": ["FARGATE"],
                "networkMode": "awsvpc", "cpu": "256", "memory": "512",
                "containerDefinitions": [{"name": "app", "image": "flotilla/workload:latest"}]}
        base.update(td)
        with pytest.raises(stack.ecs.exceptions.ClientException) as e:
            stack.ecs.register_task_definition(**base)
        return e.value.response["Error"]["Message"]

    app = {"name": "app", "image": "flotilla/workload:latest"}
    assert register(networkMode="bridge") == "Fargate only supports network mode \u2018awsvpc\u2019."
    assert register(cpu="256", memory="4096").startswith("No Fargate configuration exists for given values")
    base = {"family": "x", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc", "memory": "512",
            "containerDefinitions": [app]}
    with pytest.raises(stack.ecs.exceptions.ClientException) as e:
        stack.ecs.register_task_definition(**base)
    assert e.value.response["Error"]["Message"] == "Fargate requires that 'cpu' be defined at the task level."
    assert register(containerDefinitions=[{**app, "privileged": True}]) == (
        "Fargate requires that the 'privileged' setting be 'false'.")
    assert register(containerDefinitions=[{**app, "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}}]) == (
        "NET_ADMIN is not allowed on Fargate.")
    assert register(volumes=[{"name": "sock", "host": {"sourcePath": "/var/run/docker.sock"}}]) == (
        "Fargate compatible task definitions do not support sourcePath.")
    assert register(pidMode="host") == "Fargate compatible task definitions do not support pidMode 'host'."

    # RunTask refuses what Fargate cannot do, with ECS's InvalidParameterException.
    ec2_only = stack.ecs.register_task_definition(family=f"ec2-{uuid.uuid4().hex[:6]}", containerDefinitions=[
        {**app, "memory": 64}])["taskDefinition"]["taskDefinitionArn"]
    subnet = stack.ec2_api.describe_subnets()["Subnets"][0]["SubnetId"]
    net = {"awsvpcConfiguration": {"subnets": [subnet]}}
    with pytest.raises(stack.ecs.exceptions.InvalidParameterException) as e:
        stack.ecs.run_task(cluster=stack.cluster, taskDefinition=ec2_only, launchType="FARGATE", networkConfiguration=net)
    assert e.value.response["Error"]["Message"] == "Task definition does not support launch_type FARGATE."


def test_an_ec2_awsvpc_task_is_addressed_from_its_subnet(stack):
    td = stack.ecs.register_task_definition(
        family=f"ec2-vpc-{uuid.uuid4().hex[:6]}", networkMode="awsvpc",
        containerDefinitions=[{"name": "app", "image": "flotilla/workload:latest", "memory": 64,
                               "command": ["serve", "8080"]}],
    )["taskDefinition"]["taskDefinitionArn"]
    subnet = next(s for s in stack.ec2_api.describe_subnets()["Subnets"] if s["AvailabilityZone"].endswith("b"))
    out = stack.ecs.run_task(cluster=stack.cluster, taskDefinition=td, launchType="EC2",
                             networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}})
    assert out["failures"] == [], out
    arn = out["tasks"][0]["taskArn"]
    running = poll(lambda: next((t for t in describe(stack, [arn]) if t["lastStatus"] == "RUNNING"), None),
                   TASK_TIMEOUT, "the EC2 awsvpc task runs", stack.diagnostics)
    e = eni(running)
    assert e["subnetId"] == subnet["SubnetId"] and e["status"] == "ATTACHED", e
    assert ipaddress.ip_address(e["privateIPv4Address"]) in ipaddress.ip_network(subnet["CidrBlock"]), e
    assert running["availabilityZone"] == subnet["AvailabilityZone"], running
    # The subnet is a Docker network on the host, with the subnet's block.
    net = json.loads(docker("network", "inspect", f"flotilla-{subnet['SubnetId']}"))[0]
    assert [c["Subnet"] for c in net["IPAM"]["Config"]] == [subnet["CidrBlock"]], net["IPAM"]
    stack.ecs.stop_task(cluster=stack.cluster, task=arn)
