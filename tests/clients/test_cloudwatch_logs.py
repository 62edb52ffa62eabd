"""CloudWatch Logs on the control plane (issue 17): boto3 `logs` calls against the shared server
(groups, streams, retention, PutLogEvents/GetLogEvents/FilterLogEvents and their errors), then a
task with the `awslogs` driver on a real `flotilla agent` over the local Docker Engine, whose
output `aws logs tail --follow` (the AWS CLI v2 at /usr/bin/aws) and `aws logs get-log-events`
read back from the stream ECS would name `prefix/container/task-id`.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from agent_support import AgentProcess, TASK_TIMEOUT, WORKLOAD_IMAGE, describe_task, docker_available, poll, remove_cluster_containers
from support import make_client

AWS_V2 = "/usr/bin/aws"


@pytest.fixture(scope="module")
def logs(server_env):
    return make_client(server_env, service="logs")


def now_ms() -> int:
    return int(time.time() * 1000)


def error_of(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    err = e.value.response["Error"]
    return err["Code"], err["Message"]


def test_groups_streams_and_retention(logs, uid):
    group = f"/flotilla/test-{uid}"
    logs.create_log_group(logGroupName=group)
    assert error_of(logs.create_log_group, logGroupName=group)[0] == "ResourceAlreadyExistsException"
    code, message = error_of(logs.put_retention_policy, logGroupName=group, retentionInDays=2)
    assert code == "InvalidParameterException" and "retentionInDays" in message, message
    logs.put_retention_policy(logGroupName=group, retentionInDays=14)
    [g] = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert g["logGroupName"] == group and g["retentionInDays"] == 14 and g["storedBytes"] == 0
    assert g["arn"].endswith(f":log-group:{group}:*") and isinstance(g["creationTime"], int)
    logs.delete_retention_policy(logGroupName=group)
    assert "retentionInDays" not in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]

    assert error_of(logs.create_log_stream, logGroupName=f"{group}-missing", logStreamName="s") == (
        "ResourceNotFoundException",
        "The specified log group does not exist.",
    )
    for name in ("s1", "s2", "s3"):
        logs.create_log_stream(logGroupName=group, logStreamName=name)
    page = logs.describe_log_streams(logGroupName=group, limit=2)
    assert [s["logStreamName"] for s in page["logStreams"]] == ["s1", "s2"]
    rest = logs.describe_log_streams(logGroupName=group, limit=2, nextToken=page["nextToken"])
    assert [s["logStreamName"] for s in rest["logStreams"]] == ["s3"] and "nextToken" not in rest
    paginated = [s["logStreamName"] for p in logs.get_paginator("describe_log_streams").paginate(logGroupName=group, PaginationConfig={"PageSize": 1}) for s in p["logStreams"]]
    assert paginated == ["s1", "s2", "s3"]

    logs.delete_log_stream(logGroupName=group, logStreamName="s3")
    assert error_of(logs.delete_log_stream, logGroupName=group, logStreamName="s3")[1] == "The specified log stream does not exist."
    logs.delete_log_group(logGroupName=group)
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []
    assert error_of(logs.delete_log_group, logGroupName=group)[0] == "ResourceNotFoundException"


def test_put_get_and_filter_events(logs, uid):
    group, stream = f"/flotilla/events-{uid}", "app/web/1"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    t0 = now_ms()
    lines = ["INFO starting", "ERROR db down", "WARN slow disk", "INFO ready", "ERROR db still down"]
    out = logs.put_log_events(
        logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": t0 + i, "message": m} for i, m in enumerate(lines)]
    )
    assert out["nextSequenceToken"]
    code, message = error_of(
        logs.put_log_events, logGroupName=group, logStreamName=stream,
        logEvents=[{"timestamp": t0 + 5, "message": "b"}, {"timestamp": t0, "message": "a"}],
    )
    assert code == "InvalidParameterException" and "chronological" in message
    assert error_of(logs.put_log_events, logGroupName=group, logStreamName="nope", logEvents=[{"timestamp": t0, "message": "x"}])[1] == (
        "The specified log stream does not exist."
    )

    [s] = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert (s["firstEventTimestamp"], s["lastEventTimestamp"]) == (t0, t0 + 4)
    assert s["storedBytes"] == sum(len(m) + 26 for m in lines) and s["lastIngestionTime"] >= t0 - 60_000

    head = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True, limit=3)
    assert [e["message"] for e in head["events"]] == lines[:3]
    rest = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=head["nextForwardToken"])
    assert [e["message"] for e in rest["events"]] == lines[3:]
    end = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=rest["nextForwardToken"])
    assert end["events"] == [] and end["nextForwardToken"] == rest["nextForwardToken"], "the same token when nothing new"
    tail = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=2)
    assert [e["message"] for e in tail["events"]] == lines[3:]

    errors = logs.filter_log_events(logGroupName=group, filterPattern="ERROR")
    assert [e["message"] for e in errors["events"]] == ["ERROR db down", "ERROR db still down"]
    e = errors["events"][0]
    assert e["logStreamName"] == stream and e["timestamp"] == t0 + 1 and e["eventId"] and e["ingestionTime"] >= t0 - 60_000
    assert errors["searchedLogStreams"] == [{"logStreamName": stream, "searchedCompletely": True}]
    phrase = logs.filter_log_events(logGroupName=group, filterPattern='"still down"')
    assert [e["message"] for e in phrase["events"]] == ["ERROR db still down"]
    either = logs.filter_log_events(logGroupName=group, filterPattern="?WARN ?ready", startTime=t0, endTime=t0 + 10)
    assert [e["message"] for e in either["events"]] == ["WARN slow disk", "INFO ready"]
    paged = [e["message"] for p in logs.get_paginator("filter_log_events").paginate(logGroupName=group, PaginationConfig={"PageSize": 2}) for e in p["events"]]
    assert paged == lines
    code, message = error_of(logs.filter_log_events, logGroupName=group, logStreamNames=[stream], logStreamNamePrefix="app")
    assert code == "InvalidParameterException"
    logs.delete_log_group(logGroupName=group)


# ----------------------------------------------------------------------------------------------
# awslogs end to end


class TailFollower:
    """`aws logs tail GROUP --follow` (CLI v2) as a child process; its stdout lines in a queue."""

    def __init__(self, env: dict[str, str], group: str):
        self.lines: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [AWS_V2, "logs", "tail", group, "--follow", "--since", "1h", "--format", "detailed",
             "--endpoint-url", env["AWS_ENDPOINT_URL"], "--region", env["AWS_DEFAULT_REGION"], "--no-cli-pager"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(env),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> list[str]:
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"aws logs tail exited ({self.proc.returncode}): {self.proc.stderr.read()}")
                continue
            seen.append(line)
            if text in line:
                return seen
        raise AssertionError(f"aws logs tail printed no line with {text!r} in {timeout:.0f}s; it printed {seen}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def cli_env(server_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({k: v for k, v in server_env.items() if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    return env


def test_awslogs_task_output_reaches_cloudwatch_logs_and_aws_logs_tail(server, server_env, ecs, logs, tmp_path):
    if not os.access(AWS_V2, os.X_OK):
        pytest.fail(f"this test needs the AWS CLI v2 at {AWS_V2} (Debian package awscli)", pytrace=False)
    if not docker_available():
        pytest.fail("this test needs a reachable Docker Engine (`docker info` failed)", pytrace=False)
    uid = uuid.uuid4().hex[:8]
    cluster, group, marker = f"awslogs-{uid}", f"/ecs/awslogs-{uid}", f"hello-from-{uid}"
    cluster_arn = ecs.create_cluster(clusterName=cluster)["cluster"]["clusterArn"]
    agent = AgentProcess(server_env, cluster, tmp_path / "agent-data", tmp_path / "agent.log").start()
    tail = None
    try:
        poll(lambda: ecs.list_container_instances(cluster=cluster)["containerInstanceArns"], 60, "the agent's instance", agent.log_tail)
        # awslogs options are checked at registration, in ECS's words.
        code = error_of(
            ecs.register_task_definition, family=f"bad-{uid}",
            containerDefinitions=[{"name": "app", "image": WORKLOAD_IMAGE, "memory": 32, "logConfiguration": {
                "logDriver": "awslogs", "options": {"awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-create-group": "false"}}}],
        )
        assert code == ("ClientException", "Log driver awslogs option 'awslogs-create-group' should only be set to 'true', else omit option.")
        td = ecs.register_task_definition(
            family=f"awslogs-{uid}",
            containerDefinitions=[{
                "name": "app", "image": WORKLOAD_IMAGE, "memory": 32, "essential": True,
                "command": ["echo", marker, "then", "log", "3", "then", "sleep", "inf"],
                "logConfiguration": {"logDriver": "awslogs", "options": {
                    "awslogs-group": group, "awslogs-region": server_env["AWS_DEFAULT_REGION"],
                    "awslogs-stream-prefix": "web", "awslogs-create-group": "true"}},
            }],
        )["taskDefinition"]
        assert {"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"} in td["requiresAttributes"]
        out = ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"])
        assert out["failures"] == [], out["failures"]
        arn = out["tasks"][0]["taskArn"]
        poll(lambda: describe_task(ecs, cluster, arn)["lastStatus"] == "RUNNING", TASK_TIMEOUT, "the task RUNNING", agent.log_tail)

        # The group is created by the first batch; `aws logs tail` needs it to exist.
        poll(lambda: logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"], 60, "the log group", agent.log_tail)
        tail = TailFollower(server_env, group)
        seen = tail.wait_for(marker, 60)
        stream = f"web/app/{arn.rsplit('/', 1)[-1]}"
        assert any(stream in line for line in seen), seen
        tail.wait_for("stdout line 3 of 3", 60)

        got = subprocess.run(
            [AWS_V2, "logs", "get-log-events", "--log-group-name", group, "--log-stream-name", stream, "--start-from-head",
             "--endpoint-url", server_env["AWS_ENDPOINT_URL"], "--region", server_env["AWS_DEFAULT_REGION"], "--output", "json"],
            capture_output=True, text=True, env=cli_env(server_env), timeout=60,
        )
        assert got.returncode == 0, got.stderr
        messages = [e["message"] for e in json.loads(got.stdout)["events"]]
        # Order holds within one output stream; stdout and stderr are separate pipes, which Docker
        # reads (and stamps) apart, so their lines may interleave either way.
        stdout = [m for m in messages if m == marker or m.startswith("stdout line")]
        assert stdout == [marker] + [f"stdout line {i} of 3" for i in (1, 2, 3)], messages
        assert [m for m in messages if m.startswith("stderr line")] == [f"stderr line {i} of 3" for i in (1, 2, 3)], messages
        assert len(messages) == len(set(messages)), f"no line twice: {messages}"
        ecs.stop_task(cluster=cluster, task=arn, reason="done")
        poll(lambda: describe_task(ecs, cluster, arn)["lastStatus"] == "STOPPED", TASK_TIMEOUT, "the task STOPPED", agent.log_tail)
    finally:
        if tail:
            tail.stop()
        rc = agent.stop()
        remove_cluster_containers(cluster_arn)
        assert rc == 0, f"the agent exited with {rc}\n{agent.log_tail()}"
