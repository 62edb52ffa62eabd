"""Capacity providers on real hosts: a `flotilla server --provisioner local`, whose Auto Scaling
group launches real `flotilla agent` processes on this machine, each on its own loopback address,
running real containers on the local Docker Engine. The core of the ECS Spot workshop with the aws
CLI: a launch template, a group at 0 hosts, a capacity provider with managed scaling as the
cluster's default strategy, a service whose tasks wait in PROVISIONING until managed scaling has
launched a host and then serve HTTP from Docker, and the cleanup (`--force-delete` terminates the
host's agent and deregisters its container instance)."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid

import pytest

from agent_support import CLUSTER_LABEL, TASK_TIMEOUT, containers_labelled, docker_available, remove_cluster_containers
from support import AwsCli, ServerProcess, wait_until


@pytest.fixture(scope="module")
def local_server(workdir):
    if not docker_available():
        pytest.fail("these tests need a running Docker Engine (`docker info` failed)", pytrace=False)
    srv = ServerProcess(
        workdir / "local-hosts-data",
        workdir / "local-hosts.stderr.log",
        extra_args=("--provisioner", "local", "--scaling-period-seconds", "2"),
    ).start()
    yield srv
    rc = srv.stop()
    assert rc == 0, f"server exited {rc}\n{srv.stderr_tail()}"


def ok(res):
    assert res.ok, f"aws {' '.join(res.args)} failed: {res.error}"
    return res.data


def test_managed_scaling_launches_a_real_host_that_runs_the_service(local_server, tmp_path):
    aws = AwsCli(local_server.env, tmp_path / "cli")
    cluster = f"local-{uuid.uuid4().hex[:8]}"
    cluster_arn = ok(aws("ecs", "create-cluster", "--cluster-name", cluster))["cluster"]["clusterArn"]
    user_data = base64.b64encode(f'#!/bin/bash\necho "ECS_CLUSTER={cluster}" >> /etc/ecs/ecs.config\n'.encode()).decode()
    lt = ok(aws("ec2", "create-launch-template", "--launch-template-name", f"lt-{cluster}",
                "--launch-template-data", json.dumps({"InstanceType": "t3.small", "UserData": user_data})))
    asg = f"asg-{cluster}"
    spec = {
        "AutoScalingGroupName": asg,
        "LaunchTemplate": {"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"], "Version": "$Latest"},
        "MinSize": 0, "MaxSize": 2, "DesiredCapacity": 0,
        "AvailabilityZones": ["us-east-1a"],
        "NewInstancesProtectedFromScaleIn": True,
    }
    (tmp_path / "asg.json").write_text(json.dumps(spec))
    ok(aws("autoscaling", "create-auto-scaling-group", "--cli-input-json", f"file://{tmp_path / 'asg.json'}"))
    ok(aws("ecs", "create-capacity-provider", "--name", "cp-local", "--auto-scaling-group-provider",
           f"autoScalingGroupArn={asg},managedScaling={{status=ENABLED,targetCapacity=100,instanceWarmupPeriod=0}},"
           "managedTerminationProtection=ENABLED"))
    ok(aws("ecs", "put-cluster-capacity-providers", "--cluster", cluster, "--capacity-providers", "cp-local",
           "--default-capacity-provider-strategy", "capacityProvider=cp-local,weight=1"))
    td = [{"name": "web", "image": "flotilla/workload:latest", "command": ["serve", "8080"], "memory": 64,
           "portMappings": [{"containerPort": 8080, "hostPort": 0}]}]
    ok(aws("ecs", "register-task-definition", "--family", f"web-{cluster}", "--container-definitions", json.dumps(td)))
    try:
        ok(aws("ecs", "create-service", "--cluster", cluster, "--service-name", "web",
               "--task-definition", f"web-{cluster}", "--desired-count", "2"))

        def running():
            arns = ok(aws("ecs", "list-tasks", "--cluster", cluster))["taskArns"]
            if len(arns) != 2:
                return None
            tasks = ok(aws("ecs", "describe-tasks", "--cluster", cluster, "--tasks", *arns))["tasks"]
            return tasks if all(t["lastStatus"] == "RUNNING" for t in tasks) else None

        tasks = wait_until(running, timeout=TASK_TIMEOUT, interval=1, what="the service's tasks running on a launched host")
        assert {t["capacityProviderName"] for t in tasks} == {"cp-local"}
        hosts = ok(aws("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", asg))
        instances = hosts["AutoScalingGroups"][0]["Instances"]
        assert instances and all(i["InstanceType"] == "t3.small" for i in instances)
        ci = ok(aws("ecs", "describe-container-instances", "--cluster", cluster,
                    "--container-instances", tasks[0]["containerInstanceArn"]))["containerInstances"][0]
        assert ci["ec2InstanceId"] in {i["InstanceId"] for i in instances}
        assert ci["capacityProviderName"] == "cp-local"
        # The containers are real and serve on the host's own loopback address.
        assert len(containers_labelled(CLUSTER_LABEL, cluster_arn)) >= 2
        binding = tasks[0]["containers"][0]["networkBindings"][0]
        with urllib.request.urlopen(f"http://{binding['bindIP']}:{binding['hostPort']}/", timeout=10) as r:
            assert r.status == 200

        # Cleanup: the group's hosts go away and their container instances with them.
        ok(aws("ecs", "update-service", "--cluster", cluster, "--service", "web", "--desired-count", "0"))
        ok(aws("ecs", "delete-service", "--cluster", cluster, "--service", "web"))
        wait_until(lambda: aws("ecs", "put-cluster-capacity-providers", "--cluster", cluster,
                               "--capacity-providers", "[]", "--default-capacity-provider-strategy", "[]").ok,
                   timeout=60, interval=1, what="the provider leaving the cluster")
        ok(aws("ecs", "delete-capacity-provider", "--capacity-provider", "cp-local"))
        ok(aws("autoscaling", "delete-auto-scaling-group", "--force-delete", "--auto-scaling-group-name", asg))
        wait_until(lambda: not ok(aws("ecs", "list-container-instances", "--cluster", cluster))["containerInstanceArns"],
                   timeout=120, interval=1, what="the host deregistered")
        wait_until(lambda: not ok(aws("autoscaling", "describe-auto-scaling-groups",
                                      "--auto-scaling-group-names", asg))["AutoScalingGroups"],
                   timeout=60, interval=1, what="the group deleted")
        state = ok(aws("ec2", "describe-instances", "--instance-ids", ci["ec2InstanceId"]))
        assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"
    finally:
        remove_cluster_containers(cluster_arn)
