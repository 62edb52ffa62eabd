"""The web console in a real browser (headless Chromium through selenium), against a real
`flotilla server`, a real `flotilla agent` on the local Docker Engine, and, for the drain, one
hollow instance (`flotilla agent --simulate 1`) so that draining disturbs no real task.

The steps run in file order on one cluster and one service whose task prints a marker line: a
wrong secret key is refused and nothing is kept; sign in; the clusters page lists the cluster;
click through cluster, service, task and its logs (the marker shows); scale the service with the
page's form and see the new task appear without a reload; a change made through boto3 shows
within seconds; a refused action shows the API's own error text; stop a task; register a new
task definition revision; drain the hollow instance and activate it again. Every page visited
is kept as a screenshot (console_support.artifacts_dir, printed at the end).
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest
from botocore.exceptions import ClientError

from agent_support import TASK_TIMEOUT, WORKLOAD_IMAGE, AgentProcess, docker_available, poll, remove_cluster_containers
from console_support import Browser, fresh_artifacts
from support import ServerProcess, flotilla_bin, make_client


class Console:
    """The module's server, agents, cluster, service and browser."""

    def __init__(self, base):
        uid = uuid.uuid4().hex[:8]
        self.base = base
        self.cluster = f"console-{uid}"
        self.service = f"web-{uid}"
        self.family = f"console-{uid}"
        self.marker = f"console-marker-{uid}"
        self.server: ServerProcess | None = None
        self.agent: AgentProcess | None = None
        self.hollow: subprocess.Popen | None = None
        self.browser: Browser | None = None
        self.ecs = None

    @property
    def key(self) -> str:
        return self.server.env["AWS_ACCESS_KEY_ID"]

    @property
    def secret(self) -> str:
        return self.server.env["AWS_SECRET_ACCESS_KEY"]

    def diagnostics(self) -> str:
        parts = []
        if self.agent:
            parts.append(f"agent log:\n{self.agent.log_tail(20)}")
        if self.server:
            parts.append(f"server log:\n{self.server.stderr_tail(20)}")
        return "\n".join(parts)

    def running_task_ids(self) -> set[str]:
        arns = self.ecs.list_tasks(cluster=self.cluster, serviceName=self.service, desiredStatus="RUNNING")["taskArns"]
        return {a.rsplit("/", 1)[-1] for a in arns}

    def wait_running(self, n: int) -> set[str]:
        """Waits until the service has exactly `n` tasks, all RUNNING; returns their ids."""

        def settled():
            arns = self.ecs.list_tasks(cluster=self.cluster, serviceName=self.service)["taskArns"]
            if len(arns) != n:
                return None
            tasks = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"] if arns else []
            ok = all(t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING" for t in tasks)
            return {t["taskArn"].rsplit("/", 1)[-1] for t in tasks} if ok else None

        return poll(settled, TASK_TIMEOUT, f"{n} RUNNING tasks of {self.service}", self.diagnostics)

    def start_hollow(self) -> str:
        """One hollow instance in the cluster (registered with the root pair, as hollow agents
        are); returns its container instance ARN."""
        before = set(self.ecs.list_container_instances(cluster=self.cluster)["containerInstanceArns"])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOTILLA_", "AWS_"))}
        env.update(FLOTILLA_ACCESS_KEY_ID=self.key, FLOTILLA_SECRET_ACCESS_KEY=self.secret, FLOTILLA_LOG="warn")
        log = open(self.base / "hollow.log", "ab")
        try:
            self.hollow = subprocess.Popen(
                [flotilla_bin(), "agent", "--simulate", "1", "--cluster", self.cluster,
                 "--server", self.server.endpoint, "--region", self.server.env["AWS_DEFAULT_REGION"],
                 "--data-dir", str(self.base / "hollow-data")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )
        finally:
            log.close()

        def new_instance():
            arns = set(self.ecs.list_container_instances(cluster=self.cluster)["containerInstanceArns"]) - before
            return next(iter(arns), None)

        return poll(new_instance, 60, "the hollow instance registered", self.diagnostics)


@pytest.fixture(scope="module")
def console(tmp_path_factory, request):
    if not docker_available():
        pytest.fail("the console's browser tests need a reachable Docker Engine (`docker info` failed)", pytrace=False)
    c = Console(tmp_path_factory.mktemp("console"))
    shots = fresh_artifacts()
    cluster_arn = ""
    try:
        c.server = ServerProcess(c.base / "server-data", c.base / "server.log").start()
        c.ecs = make_client(c.server.env)
        cluster_arn = c.ecs.create_cluster(clusterName=c.cluster)["cluster"]["clusterArn"]
        c.agent = AgentProcess(c.server.env, c.cluster, c.base / "agent-data", c.base / "agent.log").start()
        poll(
            lambda: c.ecs.list_container_instances(cluster=c.cluster)["containerInstanceArns"],
            60, "the agent's container instance", c.diagnostics,
        )
        container = {
            "name": "app", "image": WORKLOAD_IMAGE, "memory": 32, "essential": True,
            "command": ["echo", c.marker, "then", "sleep", "inf"],
        }
        c.ecs.register_task_definition(family=c.family, containerDefinitions=[container])
        c.ecs.create_service(cluster=c.cluster, serviceName=c.service, taskDefinition=c.family, desiredCount=1)
        c.wait_running(1)
        c.browser = Browser(c.server.endpoint, shots)
        yield c
    finally:
        problems = []
        if c.browser:
            c.browser.close()
            capture = request.config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled():
                print(f"\nconsole screenshots ({len(c.browser.taken)}): {shots}")
        if c.hollow and c.hollow.poll() is None:
            c.hollow.send_signal(signal.SIGTERM)
            c.hollow.wait(timeout=15)
        if c.agent and c.agent.proc:
            rc = c.agent.stop()
            if rc != 0:
                problems.append(f"agent exited with status {rc}\n{c.agent.log_tail()}")
        if c.server and c.server.proc:
            rc = c.server.stop()
            if rc != 0:
                problems.append(f"server exited with status {rc}\n{c.server.stderr_tail()}")
        remove_cluster_containers(cluster_arn or f"arn:aws:ecs:us-east-1:000000000000:cluster/{c.cluster}")
        assert not problems, "\n".join(problems)


def fill(field, text: str) -> None:
    field.clear()
    field.send_keys(text)


def sign_in(b: Browser, key: str, secret: str) -> None:
    fill(b.one("#access-key-id"), key)
    fill(b.one("#secret-access-key"), secret)
    b.click(b.one("#sign-in"))


def task_links(b: Browser) -> set[str]:
    """The task ids the view links to (link text = the task's id)."""
    return set(b.js(
        "return [...document.querySelectorAll('#view a[href*=\"/tasks/\"]')].map(a => a.textContent.trim());"
    ))


def scale_form(b: Browser):
    """The service page's desired count form: (its field, its Update button)."""
    field = b.one("#view form input[name=desiredCount]")
    form = field.find_element("xpath", "ancestor::form")
    buttons = form.find_elements("css selector", "button, input[type=submit]")
    matching = [e for e in buttons if (e.text or e.get_attribute("value") or "").strip() == "Update"]
    assert matching, f"the desired count form has no Update button: {[e.text for e in buttons]}"
    return field, matching[0]


def test_wrong_key_is_refused(console):
    b = console.browser
    b.open("/console")
    sign_in(b, console.key, "wrong" + console.secret[5:])
    error = b.wait(lambda: b.visible("#signin-error") and b.one("#signin-error").text.strip(), "the sign-in error")
    b.shot("signin-refused")
    assert error, "the sign-in error is empty"
    assert not b.visible("#view"), f"a view is shown after a refused sign-in: {b.view_text()[:300]!r}"
    kept = " ".join(f"{k}={v}" for k, v in b.session_storage().items())
    assert console.key not in kept and console.secret[5:] not in kept, f"sessionStorage keeps a key: {kept!r}"


def test_sign_in_lists_the_cluster(console):
    b = console.browser
    b.open("/console")
    sign_in(b, console.key, console.secret)
    b.wait_title("Clusters")
    b.link(console.cluster)
    assert not b.visible("#signin"), "the sign-in form is still shown"
    b.shot("clusters")


def test_walk_cluster_service_task_logs(console):
    b = console.browser
    b.click_link(console.cluster)
    b.wait_title(console.cluster)
    b.shot("cluster")
    b.click_link(console.service)
    b.wait_title(console.service)
    b.shot("service")
    [task_id] = console.running_task_ids()
    b.click_link(task_id)
    b.wait_title(task_id)
    b.shot("task")
    # The task's page follows its output live.
    b.wait(lambda: console.marker in b.one("pre.logs").text, f"the task's line {console.marker!r} in pre.logs")
    b.js("arguments[0].scrollIntoView({block: 'center'});", b.one("pre.logs"))
    b.shot("task-logs")


def test_scale_with_the_form_shows_new_tasks_without_reload(console):
    b = console.browser
    b.open(f"/console/clusters/{console.cluster}/services/{console.service}")
    b.wait_title(console.service)
    b.mark()
    field, update = scale_form(b)
    fill(field, "2")
    b.click(update)
    ids = console.wait_running(2)
    b.wait(lambda: ids <= task_links(b), f"links to the tasks {ids}")
    assert b.still_marked(), "the page was reloaded"
    b.shot("service-scaled")


def test_change_through_the_api_shows_within_seconds(console):
    b = console.browser
    console.ecs.update_service(cluster=console.cluster, service=console.service, desiredCount=3)
    b.wait(lambda: len(console.running_task_ids() & task_links(b)) == 3, "three task links after boto3's update")
    assert b.still_marked(), "the page was reloaded"
    b.shot("service-updated-through-api")


def test_refused_action_shows_the_api_error(console):
    b = console.browser
    with pytest.raises(ClientError) as refused:
        console.ecs.update_service(cluster=console.cluster, service=console.service, desiredCount=-1)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException", refused.value.response
    message = refused.value.response["Error"]["Message"]
    field, update = scale_form(b)
    # The API's check is under test, not the browser's: drop any `min` the field carries.
    b.js("arguments[0].removeAttribute('min');", field)
    fill(field, "-1")
    b.click(update)
    b.wait(lambda: message in b.flash(), f"the API's message {message!r} in #flash")
    b.shot("service-refused")
    assert console.ecs.describe_services(cluster=console.cluster, services=[console.service])["services"][0][
        "desiredCount"
    ] == 3


def test_stop_task(console):
    b = console.browser
    victim = sorted(console.running_task_ids())[0]
    b.click_link(victim)
    b.wait_title(victim)
    b.click(b.button("Stop task"))
    b.accept_alert()
    arn = poll(
        lambda: next((a for a in console.ecs.list_tasks(cluster=console.cluster, desiredStatus="STOPPED")["taskArns"]
                      if a.endswith("/" + victim)), None),
        30, f"task {victim} asked to stop", console.diagnostics,
    )
    b.wait(lambda: [e for e in b.visible("#view .badge") if e.text.strip() == "STOPPED"], "STOPPED on the task's page")
    assert console.ecs.describe_tasks(cluster=console.cluster, tasks=[arn])["tasks"][0]["desiredStatus"] == "STOPPED"
    b.shot("task-stopped")


def test_register_new_revision(console):
    b = console.browser
    b.click_link("Task definitions", scope="#sections")
    b.wait_title("Task definitions")
    b.shot("task-definitions")
    b.click_link(console.family)
    b.wait_title(console.family)
    b.shot("task-definition-family")
    before = console.ecs.describe_task_definition(taskDefinition=console.family)["taskDefinition"]["revision"]
    b.click_link(f"{console.family}:{before}")
    b.wait_title(f"{console.family}:{before}")
    b.shot("task-definition")
    b.click(b.button("Register new revision"))
    b.wait(
        lambda: console.ecs.describe_task_definition(taskDefinition=console.family)["taskDefinition"]["revision"]
        == before + 1,
        f"revision {before + 1} of {console.family} registered",
    )
    b.wait(lambda: b.flash(), "the flash after registering")
    b.shot("task-definition-registered")
    b.click_link(console.family, scope="#view .crumbs")
    b.link(f"{console.family}:{before + 1}")
    b.shot("task-definition-new-revision")


def test_drain_and_activate_an_instance(console):
    b = console.browser
    arn = console.start_hollow()
    instance_id = arn.rsplit("/", 1)[-1]
    b.open(f"/console/clusters/{console.cluster}")
    b.wait_title(console.cluster)
    b.click_link(instance_id)
    b.wait_title(instance_id)
    b.shot("instance")

    def status() -> str:
        out = console.ecs.describe_container_instances(cluster=console.cluster, containerInstances=[arn])
        return out["containerInstances"][0]["status"]

    def badge(text: str):
        return [e for e in b.visible("#view .badge") if e.text.strip() == text]

    b.click(b.button("Drain"))
    b.accept_alert()
    b.wait(lambda: badge("DRAINING"), "the DRAINING badge")
    assert status() == "DRAINING"
    b.shot("instance-draining")
    b.click(b.button("Activate"))
    b.accept_alert()
    b.wait(lambda: badge("ACTIVE") and not badge("DRAINING"), "the ACTIVE badge again")
    assert status() == "ACTIVE"
    # The service still runs its three tasks.
    console.wait_running(3)
    b.shot("instance-active")
