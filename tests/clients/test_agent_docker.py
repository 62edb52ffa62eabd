"""The agent end to end (issue 3): a real `flotilla server` process and a real `flotilla agent`
process on the local Docker Engine, driven with boto3 and the aws CLI (including its waiters
`aws ecs wait tasks-running` / `tasks-stopped`). Every scenario checks the ECS-shaped result through
DescribeTasks, and where ECS's answer depends on what really happened in Docker (which container
started first, which container ID a task kept across an agent restart), through `docker inspect`.

One server and one agent, on a cluster of their own, serve the whole module; the restart scenarios
come last and leave the pair running again. The tasks run `flotilla/workload:latest`, which the
agent builds locally when the first task needs it (no registry is reachable).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from agent_support import (
    CONTAINER_LABEL,
    TASK_LABEL,
    TASK_TIMEOUT,
    WORKLOAD_IMAGE,
    AgentProcess,
    FixedPortServer,
    by_name,
    containers_labelled,
    describe_task,
    docker,
    docker_available,
    docker_inspect,
    docker_time_ns,
    free_port,
    poll,
    remove_cluster_containers,
)
from support import AwsCli, make_client

WAIT_TIMEOUT = 600.0  # seconds for one aws CLI waiter run (it polls every 6 s, up to 100 times)


class Fleet:
    """The module's server, its agent, the cluster they share, and clients for them."""

    def __init__(self, base):
        self.base = base
        self.cluster = f"agent-e2e-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.server_runs = 0
        self.agent_runs = 0
        self.server: FixedPortServer | None = None
        self.agent: AgentProcess | None = None
        self.cluster_arn = ""
        self.instance_arn = ""

    # -- processes

    def start_server(self) -> None:
        self.server_runs += 1
        self.server = FixedPortServer(
            self.base / "server-data", self.base / f"server-{self.server_runs}.log", self.port
        ).start()
        self.ecs = make_client(self.server.env)
        self.aws = AwsCli(self.server.env, self.base / "cli")

    def start_agent(self) -> None:
        self.agent_runs += 1
        self.agent = AgentProcess(
            self.server.env, self.cluster, self.base / "agent-data", self.base / f"agent-{self.agent_runs}.log"
        ).start()

    def diagnostics(self) -> str:
        parts = []
        if self.agent:
            parts.append(f"agent log:\n{self.agent.log_tail()}")
        if self.server:
            parts.append(f"server log:\n{self.server.stderr_tail(30)}")
        return "\n".join(parts)

    # -- ECS views

    def instance(self) -> dict | None:
        arns = self.ecs.list_container_instances(cluster=self.cluster)["containerInstanceArns"]
        if len(arns) != 1:
            return None
        return self.ecs.describe_container_instances(cluster=self.cluster, containerInstances=arns)[
            "containerInstances"
        ][0]

    def wait_connected(self, connected: bool = True) -> dict:
        def check():
            if connected and self.agent and not self.agent.alive():
                raise AssertionError(f"the agent exited ({self.agent.proc.returncode})\n{self.diagnostics()}")
            ci = self.instance()
            return ci if ci and ci["agentConnected"] is connected else None

        return poll(check, 60, f"the container instance with agentConnected={connected}", self.diagnostics)

    def task(self, arn: str) -> dict:
        return describe_task(self.ecs, self.cluster, arn)

    def wait_task(self, arn: str, pred, what: str, timeout: float = TASK_TIMEOUT) -> dict:
        def check():
            t = self.task(arn)
            return t if pred(t) else None

        return poll(check, timeout, what, lambda: f"task: {self.task(arn)}\n{self.diagnostics()}")

    # -- operations

    def register(self, family: str, containers: list[dict], **extra) -> str:
        return self.ecs.register_task_definition(family=family, containerDefinitions=containers, **extra)[
            "taskDefinition"
        ]["taskDefinitionArn"]

    def run(self, td: str, **extra) -> str:
        out = self.ecs.run_task(cluster=self.cluster, taskDefinition=td, **extra)
        assert out["failures"] == [], out["failures"]
        assert len(out["tasks"]) == 1, out
        task = out["tasks"][0]
        assert task["containerInstanceArn"] == self.instance_arn
        return task["taskArn"]

    def cli_wait(self, waiter: str, *arns: str) -> None:
        res = self.aws("ecs", "wait", waiter, "--cluster", self.cluster, "--tasks", *arns, timeout=WAIT_TIMEOUT)
        assert res.ok, (
            f"`aws ecs wait {waiter}` failed: {res.error}\n"
            f"tasks: {[self.task(a) for a in arns]}\n{self.diagnostics()}"
        )

    def stop(self, arn: str, reason: str = "test is done") -> dict:
        self.ecs.stop_task(cluster=self.cluster, task=arn, reason=reason)
        self.cli_wait("tasks-stopped", arn)
        return self.task(arn)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    if not docker_available():
        pytest.fail("these tests need a reachable Docker Engine (`docker info` failed)", pytrace=False)
    f = Fleet(tmp_path_factory.mktemp("agent-e2e"))
    f.start_server()
    try:
        f.cluster_arn = f.ecs.create_cluster(clusterName=f.cluster)["cluster"]["clusterArn"]
        f.start_agent()
        ci = f.wait_connected(True)
        assert ci["status"] == "ACTIVE", ci
        f.instance_arn = ci["containerInstanceArn"]
        yield f
    finally:
        # Both processes are stopped (and must exit 0 on SIGTERM), and the cluster's containers
        # removed, whatever failed first.
        problems = []
        for what, proc, tail in (("agent", f.agent, "log_tail"), ("server", f.server, "stderr_tail")):
            if proc and proc.proc:
                rc = proc.stop()
                if rc != 0:
                    problems.append(f"flotilla {what} exited with status {rc} after SIGTERM\n{getattr(proc, tail)()}")
        remove_cluster_containers(f.cluster_arn or f"arn:aws:ecs:us-east-1:000000000000:cluster/{f.cluster}")
        assert not problems, "\n".join(problems)


def workload(name: str, command: list[str], **extra) -> dict:
    c = {"name": name, "image": WORKLOAD_IMAGE, "memory": 32, "essential": True, "command": command}
    c.update(extra)
    return c


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range, which Docker draws dynamic host ports from."""
    lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
    return int(lo), int(hi)


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


# ----------------------------------------------------------------------------------------------
# 1. a web server in bridge mode with a dynamic host port


def test_bridge_web_server_gets_a_dynamic_host_port_that_answers(fleet, uid):
    body = f"hello-{uid}"
    td = fleet.register(
        f"web-{uid}",
        [workload("web", ["serve", "8080", "--body", body], portMappings=[{"containerPort": 8080, "hostPort": 0}])],
        networkMode="bridge",
    )
    arn = fleet.run(td)
    fleet.cli_wait("tasks-running", arn)

    task = fleet.task(arn)
    assert task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING"
    assert task["containerInstanceArn"] == fleet.instance_arn
    assert task.get("startedAt") is not None and task.get("pullStartedAt") is not None
    web = by_name(task)["web"]
    assert web["lastStatus"] == "RUNNING"
    assert web["image"] == WORKLOAD_IMAGE
    assert web.get("runtimeId"), web
    bindings = web["networkBindings"]
    assert len(bindings) == 1, bindings
    b = bindings[0]
    assert (b["containerPort"], b["protocol"], b["bindIP"]) == (8080, "tcp", "127.0.0.1"), b
    lo, hi = ephemeral_range()
    assert lo <= b["hostPort"] <= hi, f"host port {b['hostPort']} is outside the ephemeral range {lo}-{hi}"

    # The binding is real: Docker publishes that very port for this container, and it answers.
    info = docker_inspect(web["runtimeId"])
    assert info["Config"]["Labels"][TASK_LABEL] == arn
    published = info["NetworkSettings"]["Ports"]["8080/tcp"]
    assert {"HostIp": "127.0.0.1", "HostPort": str(b["hostPort"])} in published, published
    status, text = http_get(f"http://127.0.0.1:{b['hostPort']}/")
    assert (status, text.strip()) == (200, body)

    stopped = fleet.stop(arn, reason=f"done {uid}")
    assert stopped["lastStatus"] == "STOPPED" and stopped["desiredStatus"] == "STOPPED"
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == f"done {uid}"
    assert by_name(stopped)["web"]["lastStatus"] == "STOPPED"


# ----------------------------------------------------------------------------------------------
# 2. an essential container that exits


def test_essential_container_exit_stops_the_task_with_its_exit_code(fleet, uid):
    td = fleet.register(
        f"exit3-{uid}",
        [
            workload("main", ["exit", "3", "--after", "1"]),
            workload("sidecar", ["sleep", "inf"], essential=False),
        ],
    )
    arn = fleet.run(td)
    fleet.cli_wait("tasks-stopped", arn)

    task = fleet.task(arn)
    assert task["lastStatus"] == "STOPPED" and task["desiredStatus"] == "STOPPED"
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["stoppedReason"].startswith("Essential container in task exited"), task["stoppedReason"]
    assert "main" in task["stoppedReason"] and "sidecar" not in task["stoppedReason"], task["stoppedReason"]
    assert task.get("stoppedAt") is not None and task.get("stoppingAt") is not None
    containers = by_name(task)
    assert containers["main"]["lastStatus"] == "STOPPED"
    assert containers["main"]["exitCode"] == 3
    # ECS stops the rest of the task with it: the sidecar got SIGTERM (128+15 from the workload).
    assert containers["sidecar"]["lastStatus"] == "STOPPED"
    assert containers["sidecar"]["exitCode"] == 143
    assert docker_inspect(containers["main"]["runtimeId"])["State"]["ExitCode"] == 3


# ----------------------------------------------------------------------------------------------
# 3. dependsOn ordering


def test_depends_on_starts_containers_in_order(fleet, uid):
    td = fleet.register(
        f"order-{uid}",
        [
            workload("init", ["exit", "0", "--after", "1"], essential=False),
            workload("migrate", ["exit", "1", "--after", "1"], essential=False),
            workload(
                "app",
                ["sleep", "inf"],
                dependsOn=[
                    {"containerName": "init", "condition": "SUCCESS"},
                    {"containerName": "migrate", "condition": "COMPLETE"},
                ],
            ),
            workload(
                "sidecar", ["sleep", "inf"], essential=False, dependsOn=[{"containerName": "app", "condition": "START"}]
            ),
        ],
    )
    arn = fleet.run(td)
    fleet.cli_wait("tasks-running", arn)

    task = fleet.task(arn)
    assert task["lastStatus"] == "RUNNING"
    c = by_name(task)
    assert (c["init"]["lastStatus"], c["init"]["exitCode"]) == ("STOPPED", 0)
    # COMPLETE is met by any exit code; the non-essential container's failure does not stop the task.
    assert (c["migrate"]["lastStatus"], c["migrate"]["exitCode"]) == ("STOPPED", 1)
    assert c["app"]["lastStatus"] == "RUNNING"
    c = by_name(fleet.wait_task(arn, lambda t: by_name(t)["sidecar"]["lastStatus"] == "RUNNING", "sidecar RUNNING"))

    state = {n: docker_inspect(c[n]["runtimeId"])["State"] for n in ("init", "migrate", "app", "sidecar")}
    app_started = docker_time_ns(state["app"]["StartedAt"])
    assert docker_time_ns(state["init"]["FinishedAt"]) <= app_started, state
    assert docker_time_ns(state["migrate"]["FinishedAt"]) <= app_started, state
    assert app_started <= docker_time_ns(state["sidecar"]["StartedAt"]), state

    stopped = fleet.stop(arn)
    assert all(x["lastStatus"] == "STOPPED" for x in stopped["containers"]), stopped["containers"]


def test_unmet_success_dependency_stops_the_task_before_the_dependent_starts(fleet, uid):
    td = fleet.register(
        f"unmet-{uid}",
        [
            workload("init", ["exit", "4", "--after", "1"], essential=False),
            workload("app", ["sleep", "inf"], dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]),
        ],
    )
    arn = fleet.run(td)
    fleet.cli_wait("tasks-stopped", arn)

    task = fleet.task(arn)
    assert task["lastStatus"] == "STOPPED"
    assert task.get("startedAt") is None, "the task never ran all its essential containers"
    c = by_name(task)
    assert (c["init"]["lastStatus"], c["init"]["exitCode"]) == ("STOPPED", 4)
    assert c["app"]["lastStatus"] == "STOPPED"
    assert "exitCode" not in c["app"], c["app"]
    assert "init" in task["stoppedReason"], task["stoppedReason"]
    # The dependent was never started in Docker.
    for cid in containers_labelled(TASK_LABEL, arn):
        info = docker_inspect(cid)
        if info["Config"]["Labels"].get(CONTAINER_LABEL) == "app":
            assert info["State"]["StartedAt"].startswith("0001-"), info["State"]


# ----------------------------------------------------------------------------------------------
# 4. health checks


def test_failing_health_check_makes_the_container_and_task_unhealthy(fleet, uid):
    def check(path: str) -> dict:
        return {
            "command": ["CMD", "/flotilla-workload", "healthcheck", path],
            "interval": 5,
            "timeout": 2,
            "retries": 1,
            "startPeriod": 0,
        }

    passing, failing = check("/flotilla-workload"), check("/no-such-file")
    sick = fleet.register(
        f"sick-{uid}",
        [
            workload("bad", ["sleep", "inf"], healthCheck=failing),
            workload("good", ["sleep", "inf"], healthCheck=passing),
        ],
    )
    # A failing non-essential container does not count towards the task's health.
    fine = fleet.register(
        f"fine-{uid}",
        [
            workload("good", ["sleep", "inf"], healthCheck=passing),
            workload("bad", ["sleep", "inf"], healthCheck=failing, essential=False),
        ],
    )
    sick_arn, fine_arn = fleet.run(sick), fleet.run(fine)
    fleet.cli_wait("tasks-running", sick_arn, fine_arn)

    def settled(t):
        c = by_name(t)
        return c["bad"].get("healthStatus") == "UNHEALTHY" and c["good"].get("healthStatus") == "HEALTHY"

    task = fleet.wait_task(sick_arn, settled, "bad UNHEALTHY and good HEALTHY")
    assert task["healthStatus"] == "UNHEALTHY"
    other = fleet.wait_task(fine_arn, settled, "bad UNHEALTHY and good HEALTHY (second task)")
    assert other["healthStatus"] == "HEALTHY"

    # ECS: a task run on its own (not by a service) "will continue its lifecycle regardless of its
    # health status". Let Docker run further failing checks, then the task must still be running.
    bad_id = by_name(task)["bad"]["runtimeId"]
    poll(
        lambda: docker_inspect(bad_id)["State"]["Health"]["FailingStreak"] >= 3,
        120,
        "three failed health checks in a row",
    )
    task = fleet.task(sick_arn)
    assert (task["lastStatus"], task["desiredStatus"], task["healthStatus"]) == ("RUNNING", "RUNNING", "UNHEALTHY")
    assert by_name(task)["bad"]["lastStatus"] == "RUNNING"

    for arn in (sick_arn, fine_arn):
        stopped = fleet.stop(arn)
        assert stopped["stopCode"] == "UserInitiated"


# ----------------------------------------------------------------------------------------------
# 5. awsvpc: an address per task


def eni_address(task: dict) -> tuple[str, str]:
    """The task's ElasticNetworkInterface attachment id and its privateIPv4Address; the interface
    is ATTACHED while the task lives and DELETED once it has stopped, as on ECS."""
    enis = [a for a in task.get("attachments", []) if a["type"] == "ElasticNetworkInterface"]
    assert len(enis) == 1, task.get("attachments")
    details = {d["name"]: d["value"] for d in enis[0]["details"]}
    expected = "DELETED" if task["lastStatus"] == "STOPPED" else "ATTACHED"
    assert enis[0]["status"] == expected, enis[0]
    return enis[0]["id"], details["privateIPv4Address"]


def test_awsvpc_tasks_get_their_own_addresses_and_reach_each_other(fleet, uid):
    body = f"vpc-{uid}"
    td = fleet.register(
        f"vpc-{uid}",
        [workload("app", ["serve", "8080", "--body", body], portMappings=[{"containerPort": 8080}])],
        networkMode="awsvpc",
    )
    net = {"awsvpcConfiguration": {"subnets": ["subnet-flotilla"]}}
    server_a, server_b = fleet.run(td, networkConfiguration=net), fleet.run(td, networkConfiguration=net)
    fleet.cli_wait("tasks-running", server_a, server_b)

    a, b = fleet.task(server_a), fleet.task(server_b)
    (a_att, a_ip), (b_att, b_ip) = eni_address(a), eni_address(b)
    assert a_ip != b_ip, (a_ip, b_ip)
    assert a_att != b_att
    for task, att, ip in ((a, a_att, a_ip), (b, b_att, b_ip)):
        nics = by_name(task)["app"]["networkInterfaces"]
        assert nics == [{"attachmentId": att, "privateIpv4Address": ip}], nics

    # A third task fetches from A at A's address and exits 0 only on a 2xx answer.
    client = fleet.run(
        td,
        networkConfiguration=net,
        overrides={"containerOverrides": [{"name": "app", "command": ["get", f"http://{a_ip}:8080/"]}]},
    )
    fleet.cli_wait("tasks-stopped", client)
    c = fleet.task(client)
    assert c["stopCode"] == "EssentialContainerExited"
    app = by_name(c)["app"]
    assert app["exitCode"] == 0, (app, docker("logs", app["runtimeId"], check=False))
    assert docker("logs", app["runtimeId"]).strip() == body
    _, c_ip = eni_address(c)
    assert c_ip not in (a_ip, b_ip)

    for arn in (server_a, server_b):
        fleet.stop(arn)


# ----------------------------------------------------------------------------------------------
# 7b. the task metadata endpoint (v4), read from inside the task's own container


def metadata_lines(container_id: str, n: int) -> list[dict]:
    """The first `n` JSON bodies the container's `fetch` steps printed, one per line."""

    def check():
        lines = [l for l in docker("logs", container_id).splitlines() if l.startswith("{")]
        return lines[:n] if len(lines) >= n else None

    return [json.loads(l) for l in poll(check, TASK_TIMEOUT, f"{n} metadata bodies from {container_id}")]


def test_a_container_reads_its_own_task_metadata_and_only_its_own(fleet, uid):
    probe = ["fetch", "${ECS_CONTAINER_METADATA_URI_V4}", "then", "fetch", "${ECS_CONTAINER_METADATA_URI_V4}/task"]
    probe_c = workload("probe", probe + ["then", "sleep", "inf"], cpu=64)
    td = fleet.register(f"meta-{uid}", [probe_c], cpu="256", memory="128")
    first, second = fleet.run(td), fleet.run(td)
    fleet.cli_wait("tasks-running", first, second)

    urls = {}
    for arn in (first, second):
        probe_c = by_name(fleet.task(arn))["probe"]
        me, task = metadata_lines(probe_c["runtimeId"], 2)
        assert me["DockerId"] == probe_c["runtimeId"] and me["Name"] == "probe", me
        assert me["ContainerARN"] == probe_c["containerArn"], me
        assert me["Limits"] == {"CPU": 64, "Memory": 32}, me
        assert me["Networks"][0]["NetworkMode"] == "bridge", me
        assert task["TaskARN"] == arn and task["Cluster"] == fleet.cluster_arn, task
        assert task["Family"] == f"meta-{uid}" and task["Revision"] == "1", task
        assert task["Limits"] == {"CPU": 0.25, "Memory": 128}, task
        # The probe reads at its first instant, which can be before the agent has seen its
        # container start (ECS's agent answers the same way): RUNNING is checked below.
        assert task["LaunchType"] == "EC2" and task["KnownStatus"] in ("PENDING", "ACTIVATING", "RUNNING"), task
        assert [c["DockerId"] for c in task["Containers"]] == [probe_c["runtimeId"]], task
        env = dict(e.split("=", 1) for e in docker_inspect(probe_c["runtimeId"])["Config"]["Env"])
        urls[arn] = env["ECS_CONTAINER_METADATA_URI_V4"]
    # Each container's URL is its own: it answers for its task only, and a made-up one is a 404.
    assert urls[first] != urls[second]
    for arn, url in urls.items():
        status, body = http_get(f"{url}/task")
        assert status == 200 and json.loads(body)["TaskARN"] == arn
        assert json.loads(body)["KnownStatus"] == "RUNNING", body
    made_up = urls[first].rsplit("/", 1)[0] + "/" + uuid.uuid4().hex
    with pytest.raises(urllib.error.HTTPError) as refused:
        http_get(f"{made_up}/task")
    assert refused.value.code == 404
    stats = json.loads(http_get(f"{urls[first]}/stats")[1])
    assert "memory_stats" in stats and "cpu_stats" in stats, stats

    for arn in (first, second):
        fleet.stop(arn)


# ----------------------------------------------------------------------------------------------
# 8. an image that cannot be pulled


def test_missing_image_stops_the_task_with_cannot_pull_container_error(fleet, uid):
    image = f"flotilla-missing.invalid/nothing-{uid}:latest"
    td = fleet.register(f"nopull-{uid}", [{"name": "app", "image": image, "memory": 32, "essential": True}])
    arn = fleet.run(td)
    fleet.cli_wait("tasks-stopped", arn)

    task = fleet.task(arn)
    assert task["lastStatus"] == "STOPPED" and task["desiredStatus"] == "STOPPED"
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"].startswith("CannotPullContainerError"), task["stoppedReason"]
    app = by_name(task)["app"]
    assert app["lastStatus"] == "STOPPED"
    assert app["reason"].startswith("CannotPullContainerError"), app
    assert "exitCode" not in app
    assert task.get("startedAt") is None
    assert containers_labelled(TASK_LABEL, arn) == [], "no container should exist for an image never pulled"


# ----------------------------------------------------------------------------------------------
# 6. the agent restarts under running tasks (these and 7 come last: they restart the processes)


def start_sleeper(fleet, uid) -> tuple[str, str]:
    td = fleet.register(f"keep-{uid}", [workload("app", ["sleep", "inf"])])
    arn = fleet.run(td)
    fleet.cli_wait("tasks-running", arn)
    runtime_id = by_name(fleet.task(arn))["app"]["runtimeId"]
    assert docker_inspect(runtime_id)["State"]["Running"] is True
    return arn, runtime_id


def test_agent_restart_keeps_the_running_task_and_its_container(fleet, uid):
    arn, runtime_id = start_sleeper(fleet, uid)

    assert fleet.agent.stop() == 0, fleet.agent.log_tail()
    ci = fleet.wait_connected(False)
    assert ci["containerInstanceArn"] == fleet.instance_arn
    # The container outlives the agent.
    assert docker_inspect(runtime_id)["State"]["Running"] is True

    fleet.start_agent()
    ci = fleet.wait_connected(True)
    assert ci["containerInstanceArn"] == fleet.instance_arn, "a restarted agent must keep its instance"
    assert fleet.ecs.list_container_instances(cluster=fleet.cluster)["containerInstanceArns"] == [fleet.instance_arn]

    task = fleet.task(arn)
    assert (task["lastStatus"], task["desiredStatus"]) == ("RUNNING", "RUNNING")
    assert by_name(task)["app"]["runtimeId"] == runtime_id
    assert containers_labelled(TASK_LABEL, arn) == [runtime_id], "the task must keep its one container"
    assert docker_inspect(runtime_id)["State"]["Running"] is True

    stopped = fleet.stop(arn)
    assert stopped["stopCode"] == "UserInitiated"
    assert by_name(stopped)["app"]["lastStatus"] == "STOPPED"
    assert docker_inspect(runtime_id)["State"]["Running"] is False


def test_stop_sent_while_the_agent_was_killed_is_carried_out_when_it_returns(fleet, uid):
    arn, runtime_id = start_sleeper(fleet, uid)

    assert fleet.agent.kill() == -9
    fleet.wait_connected(False)
    fleet.ecs.stop_task(cluster=fleet.cluster, task=arn, reason=f"while away {uid}")
    task = fleet.task(arn)
    assert task["desiredStatus"] == "STOPPED"
    assert docker_inspect(runtime_id)["State"]["Running"] is True, "nobody has stopped the container yet"

    fleet.start_agent()
    assert fleet.wait_connected(True)["containerInstanceArn"] == fleet.instance_arn
    fleet.cli_wait("tasks-stopped", arn)
    task = fleet.task(arn)
    assert (task["stopCode"], task["stoppedReason"]) == ("UserInitiated", f"while away {uid}")
    assert by_name(task)["app"]["runtimeId"] == runtime_id
    assert containers_labelled(TASK_LABEL, arn) == [runtime_id]
    assert docker_inspect(runtime_id)["State"]["Running"] is False


# ----------------------------------------------------------------------------------------------
# 7. the server restarts under a running task


def test_server_restart_agent_reconnects_and_the_task_keeps_running(fleet, uid):
    arn, runtime_id = start_sleeper(fleet, uid)

    assert fleet.server.stop() == 0, fleet.server.stderr_tail()
    fleet.start_server()  # same data directory, same address, same key pair
    ci = fleet.wait_connected(True)
    assert ci["containerInstanceArn"] == fleet.instance_arn
    assert fleet.agent.alive(), fleet.agent.log_tail()

    task = fleet.task(arn)
    assert (task["lastStatus"], task["desiredStatus"]) == ("RUNNING", "RUNNING")
    assert by_name(task)["app"]["runtimeId"] == runtime_id
    assert docker_inspect(runtime_id)["State"]["Running"] is True

    stopped = fleet.stop(arn, reason=f"after restart {uid}")
    assert (stopped["stopCode"], stopped["stoppedReason"]) == ("UserInitiated", f"after restart {uid}")
    assert docker_inspect(runtime_id)["State"]["Running"] is False
