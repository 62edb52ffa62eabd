"""The AWS workshop "Cost optimize container workloads using EC2 Spot and capacity providers",
walked with the same aws CLI commands against a server whose Auto Scaling groups launch hollow
hosts (`--provisioner simulate`) and whose managed scaling measures every 2 seconds: a launch
template with ECS user data, an on-demand and a Spot group from JSON files, capacity providers
with managed scaling and termination protection, the cluster default strategy
`CP-OD base=2 weight=1, CP-SPOT weight=3`, a service of 10 tasks split 4/6 as hosts appear, scaled
to 22 (7/15), a Spot host reclaimed and its tasks replaced, and the cleanup with the workshop's
polling loops."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

from support import AwsCli, ServerProcess, flotilla_bin, wait_until
from workshop_support import err, fill, ok

CLUSTER = "EcsSpotWorkshop"
USER_DATA = """#!/bin/bash
echo "ECS_CLUSTER=EcsSpotWorkshop" >> /etc/ecs/ecs.config
echo "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" >> /etc/ecs/ecs.config
echo "ECS_CONTAINER_STOP_TIMEOUT=90s" >> /etc/ecs/ecs.config
"""


@pytest.fixture(scope="module")
def workshop(workdir):
    srv = ServerProcess(
        workdir / "workshop-data",
        workdir / "workshop.stderr.log",
        extra_args=("--provisioner", "simulate", "--scaling-period-seconds", "2"),
    ).start()
    yield srv
    rc = srv.stop()
    assert rc == 0, f"server exited {rc}\n{srv.stderr_tail()}"



def service_tasks(aws: AwsCli) -> list[dict]:
    arns = ok(aws("ecs", "list-tasks", "--cluster", CLUSTER, "--service-name", "ec2-service-split"))["taskArns"]
    tasks = []
    for i in range(0, len(arns), 100):
        tasks += ok(aws("ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks", *arns[i : i + 100]))["tasks"]
    return tasks


def split_when_running(aws: AwsCli, total: int):
    def probe():
        tasks = service_tasks(aws)
        running = [t for t in tasks if t["lastStatus"] == "RUNNING"]
        if len(tasks) != total or len(running) != total:
            return None
        by = {}
        for t in running:
            by[t["capacityProviderName"]] = by.get(t["capacityProviderName"], 0) + 1
        return (by.get("CP-OD", 0), by.get("CP-SPOT", 0))

    return wait_until(probe, timeout=90, interval=1, what=f"{total} running tasks")


def flotilla(env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLOTILLA_"))}
    clean.update(env)
    return subprocess.run([flotilla_bin(), *args], env=clean, capture_output=True, text=True, timeout=30)


def test_the_ecs_spot_workshop(workshop, tmp_path):
    aws = AwsCli(workshop.env, tmp_path / "cli")

    # The default VPC's subnets, one per zone.
    subnets = ok(aws("ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true"))["Subnets"]
    assert len(subnets) >= 2
    subnet_list = ",".join(s["SubnetId"] for s in subnets)

    # The launch template, its user data configuring the hosts' agents.
    data = fill(
        "launch-template-data.json",
        tmp_path / "lt.json",
        USER_DATA=base64.b64encode(USER_DATA.encode()).decode(),
    )
    lt = ok(
        aws(
            "ec2", "create-launch-template", "--launch-template-name", "ecs-spot-workshop-lt",
            "--version-description", "1", "--launch-template-data", data,
        )
    )["LaunchTemplate"]
    assert lt["LaunchTemplateId"].startswith("lt-")

    ok(aws("ecs", "create-cluster", "--cluster-name", CLUSTER))

    # The two groups: on-demand (100% above base) and Spot (0%).
    arns = {}
    for cp, asg, pct in [("CP-OD", "EcsSpotWorkshop-ASG-OD", 100), ("CP-SPOT", "EcsSpotWorkshop-ASG-SPOT", 0)]:
        spec = fill(
            "asg.json", tmp_path / f"{asg}.json",
            ASG_NAME=asg, LAUNCH_TEMPLATE_ID=lt["LaunchTemplateId"], OD_PERCENTAGE=pct, SUBNETS=subnet_list,
        )
        ok(aws("autoscaling", "create-auto-scaling-group", "--cli-input-json", spec))
        arns[cp] = ok(
            aws("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", asg)
        )["AutoScalingGroups"][0]["AutoScalingGroupARN"]
        spec = fill("capacity-provider.json", tmp_path / f"{cp}.json", CP_NAME=cp, ASG_ARN=arns[cp])
        created = ok(aws("ecs", "create-capacity-provider", "--cli-input-json", spec))["capacityProvider"]
        assert created["status"] == "ACTIVE"
        assert created["autoScalingGroupProvider"]["managedTerminationProtection"] == "ENABLED"

    # Bad inputs get ECS's modeled errors.
    err(aws("ecs", "create-capacity-provider", "--name", "ecs-cp",
            "--auto-scaling-group-provider", f"autoScalingGroupArn={arns['CP-OD']}"), "ClientException")
    err(aws("ecs", "create-capacity-provider", "--name", "CP-AGAIN",
            "--auto-scaling-group-provider", f"autoScalingGroupArn={arns['CP-OD']}"), "ClientException")
    err(aws("ecs", "put-cluster-capacity-providers", "--cluster", CLUSTER, "--capacity-providers", "CP-OD", "CP-SPOT",
            "--default-capacity-provider-strategy", "capacityProvider=CP-OD,base=2,weight=1",
            "capacityProvider=CP-SPOT,base=1,weight=3"), "InvalidParameterException")

    cluster = ok(
        aws(
            "ecs", "put-cluster-capacity-providers", "--cluster", CLUSTER,
            "--capacity-providers", "FARGATE", "FARGATE_SPOT", "CP-OD", "CP-SPOT",
            "--default-capacity-provider-strategy",
            "capacityProvider=CP-OD,base=2,weight=1", "capacityProvider=CP-SPOT,weight=3",
        )
    )["cluster"]
    assert cluster["capacityProviders"] == ["FARGATE", "FARGATE_SPOT", "CP-OD", "CP-SPOT"]
    assert [a["type"] for a in cluster["attachments"]] == ["as_policy", "as_policy"]

    td = {
        "family": "ec2-task",
        "requiresCompatibilities": ["EC2"],
        "containerDefinitions": [
            {"name": "web", "image": "flotilla/workload:latest", "command": ["serve", "8080"],
             "cpu": 256, "memory": 1024, "essential": True}
        ],
    }
    (tmp_path / "td.json").write_text(json.dumps(td))
    ok(aws("ecs", "register-task-definition", "--cli-input-json", f"file://{tmp_path / 'td.json'}"))
    err(aws("ecs", "run-task", "--cluster", CLUSTER, "--task-definition", "ec2-task", "--launch-type", "EC2",
            "--capacity-provider-strategy", "capacityProvider=CP-OD,weight=1"), "InvalidParameterException")

    # Ten tasks: hosts appear in both groups, the tasks split 4 / 6.
    svc = ok(aws("ecs", "create-service", "--cluster", CLUSTER, "--service-name", "ec2-service-split",
                 "--task-definition", "ec2-task", "--desired-count", "10"))["service"]
    assert [(i["capacityProvider"], i["weight"], i["base"]) for i in svc["capacityProviderStrategy"]] == [
        ("CP-OD", 1, 2), ("CP-SPOT", 3, 0)]
    assert split_when_running(aws, 10) == (4, 6)
    groups = ok(aws("autoscaling", "describe-auto-scaling-groups"))["AutoScalingGroups"]
    assert all(g["Instances"] for g in groups), groups

    # Managed termination protection: every host running a task is protected from scale-in (a
    # registered host left empty is not, so that it can go), once a scaling period has seen it.
    def busy_hosts_protected():
        arns = ok(aws("ecs", "list-tasks", "--cluster", CLUSTER))["taskArns"]
        tasks = ok(aws("ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks", *arns))["tasks"]
        used = sorted({t["containerInstanceArn"] for t in tasks if t.get("containerInstanceArn")})
        cis = ok(aws("ecs", "describe-container-instances", "--cluster", CLUSTER, "--container-instances", *used))
        busy = {c["ec2InstanceId"] for c in cis["containerInstances"]}
        hosts = {
            i["InstanceId"]: i
            for g in ok(aws("autoscaling", "describe-auto-scaling-groups"))["AutoScalingGroups"]
            for i in g["Instances"]
        }
        return busy and all(hosts[h]["ProtectedFromScaleIn"] for h in busy if h in hosts)

    wait_until(busy_hosts_protected, timeout=30, interval=1, what="every host running a task protected from scale-in")
    spot_hosts = ok(aws("ec2", "describe-instances", "--filters", "Name=instance-lifecycle,Values=spot"))
    spot_ids = [i["InstanceId"] for r in spot_hosts["Reservations"] for i in r["Instances"]]
    assert spot_ids, spot_hosts
    cis = ok(aws("ecs", "describe-container-instances", "--cluster", CLUSTER, "--container-instances",
                 *ok(aws("ecs", "list-container-instances", "--cluster", CLUSTER))["containerInstanceArns"]))
    by_ec2 = {c["ec2InstanceId"]: c for c in cis["containerInstances"]}
    assert all(by_ec2[i]["capacityProviderName"] == "CP-SPOT" for i in spot_ids if i in by_ec2)

    # Twenty-two: 7 / 15.
    ok(aws("ecs", "update-service", "--cluster", CLUSTER, "--service", "ec2-service-split", "--desired-count", "22"))
    assert split_when_running(aws, 22) == (7, 15)

    # A Spot host is reclaimed: it drains at once, its tasks are replaced, it goes away.
    tasks = service_tasks(aws)
    victim_ci = next(t["containerInstanceArn"] for t in tasks if t["capacityProviderName"] == "CP-SPOT")
    victim = ok(aws("ecs", "describe-container-instances", "--cluster", CLUSTER, "--container-instances", victim_ci))
    victim = victim["containerInstances"][0]
    p = flotilla(workshop.env, "spot", "interrupt", "--instance-id", victim["ec2InstanceId"], "--warning-seconds", "6")
    assert p.returncode == 0, p.stderr
    wait_until(
        lambda: ok(aws("ecs", "describe-container-instances", "--cluster", CLUSTER, "--container-instances",
                       victim_ci))["containerInstances"][0]["status"] == "DRAINING",
        timeout=20, what="the reclaimed host draining",
    )
    wait_until(
        lambda: victim_ci not in ok(aws("ecs", "list-container-instances", "--cluster", CLUSTER))["containerInstanceArns"],
        timeout=60, what="the reclaimed host deregistered",
    )
    assert split_when_running(aws, 22) == (7, 15)
    assert all(t["containerInstanceArn"] != victim_ci for t in service_tasks(aws))
    state = ok(aws("ec2", "describe-instances", "--instance-ids", victim["ec2InstanceId"]))
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated")

    # Cleanup, as the workshop writes it.
    ok(aws("ecs", "update-service", "--cluster", CLUSTER, "--service", "ec2-service-split", "--desired-count", "0"))
    ok(aws("ecs", "delete-service", "--cluster", CLUSTER, "--service", "ec2-service-split"))
    wait_until(
        lambda: aws("ecs", "put-cluster-capacity-providers", "--cluster", CLUSTER, "--capacity-providers", "[]",
                    "--default-capacity-provider-strategy", "[]").ok,
        timeout=60, interval=1, what="the providers leaving the cluster",
    )
    for cp in ("CP-OD", "CP-SPOT"):
        ok(aws("ecs", "delete-capacity-provider", "--capacity-provider", cp))
        wait_until(
            lambda: ok(aws("ecs", "describe-capacity-providers", "--capacity-providers", cp))
            ["capacityProviders"][0]["status"] == "INACTIVE",
            timeout=30, what=f"{cp} INACTIVE",
        )
    for asg in ("EcsSpotWorkshop-ASG-OD", "EcsSpotWorkshop-ASG-SPOT"):
        ok(aws("autoscaling", "delete-auto-scaling-group", "--force-delete", "--auto-scaling-group-name", asg))
    wait_until(
        lambda: not ok(aws("autoscaling", "describe-auto-scaling-groups"))["AutoScalingGroups"],
        timeout=60, interval=1, what="the groups deleted",
    )
    wait_until(
        lambda: not ok(aws("ecs", "list-container-instances", "--cluster", CLUSTER))["containerInstanceArns"],
        timeout=60, interval=1, what="the hosts deregistered",
    )
    # Empty lists print as a single key (this aws CLI v1 has json and table output, not yaml).
    for cmd, key, title in [("list-container-instances", "containerInstanceArns", "ListContainerInstances"),
                            ("list-tasks", "taskArns", "ListTasks")]:
        assert ok(aws("ecs", cmd, "--cluster", CLUSTER)) == {key: []}
        table = aws("ecs", cmd, "--cluster", CLUSTER, "--output", "table", output_json=False)
        assert table.ok and [line for line in table.stdout.splitlines() if "|" in line] == [f"|{title}|"], table.stdout
    ok(aws("ecs", "delete-cluster", "--cluster", CLUSTER))
