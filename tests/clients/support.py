"""Support for the client tests: running a real `flotilla server`, boto3 clients for it, the aws
CLI runner, and small helpers the test modules share.

The server binary comes from $FLOTILLA_BIN (scripts/test.sh sets it); it is started on port 0 in a
temporary data directory, and its one stdout line
    export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_ENDPOINT_URL=... AWS_DEFAULT_REGION=...
tells the clients where it is and which key pair to sign with. Every wait is bounded, so a server
that never starts or never stops fails the run with its stderr instead of hanging it.
"""

from __future__ import annotations

import json
import os
import selectors
import shlex
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = float(os.environ.get("FLOTILLA_START_TIMEOUT", "30"))  # seconds for the export line and /health
STOP_TIMEOUT = 15.0  # seconds for a clean exit after SIGTERM
CLI_TIMEOUT = 60.0  # seconds for one aws CLI run
ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


def flotilla_bin() -> str:
    path = os.environ.get("FLOTILLA_BIN") or str(REPO / "target" / "debug" / "flotilla")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        pytest.fail(
            f"FLOTILLA_BIN={path!r} is not an executable file; build it with `cargo build -p flotilla` "
            "and run with FLOTILLA_BIN=$PWD/target/debug/flotilla",
            pytrace=False,
        )
    return path


def parse_export_line(line: str) -> dict[str, str]:
    """`export A=1 B=2` -> {"A": "1", "B": "2"}; fails unless all four expected keys are there."""
    words = shlex.split(line)
    assert words and words[0] == "export", f"server's first stdout line is not an export line: {line!r}"
    env = {}
    for w in words[1:]:
        k, sep, v = w.partition("=")
        assert sep, f"malformed assignment {w!r} in export line {line!r}"
        env[k] = v
    missing = [k for k in ENV_KEYS if not env.get(k)]
    assert not missing, f"export line lacks {missing}: {line!r}"
    return env


class ServerProcess:
    """One `flotilla server` child process on a data directory."""

    def __init__(
        self, data_dir: Path, log_path: Path, extra_args: tuple[str, ...] = (), listen: str = "127.0.0.1:0"
    ):
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.extra_args = tuple(extra_args)
        self.listen = listen
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.export_line = ""

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    def stderr_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no stderr log>"
        return "\n".join(lines[-n:])

    def start(self) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [flotilla_bin(), "server", "--listen", self.listen, "--data-dir", str(self.data_dir), *self.extra_args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env={k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_") or k == "FLOTILLA_LOG"},
            )
        finally:
            log.close()
        # With TLS the server prints a second line, `export AWS_CA_BUNDLE=...`.
        tls = "--tls" in self.extra_args or "--tls-cert" in self.extra_args
        lines = self._read_lines(2 if tls else 1, START_TIMEOUT)
        self.export_line = lines[0]
        self.env = parse_export_line(lines[0])
        for extra in lines[1:]:
            words = shlex.split(extra)
            assert words[:1] == ["export"], f"server's second stdout line is not an export line: {extra!r}"
            self.env.update(w.partition("=")[::2] for w in words[1:])
        self._wait_healthy(START_TIMEOUT)
        return self

    def _read_lines(self, n: int, timeout: float) -> list[str]:
        assert self.proc and self.proc.stdout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        try:
            while buf.count(b"\n") < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    pytest.fail(
                        f"flotilla server printed no export line within {timeout:.0f}s; stdout so far {buf!r}\n"
                        f"stderr:\n{self.stderr_tail()}",
                        pytrace=False,
                    )
                if not sel.select(timeout=min(left, 0.5)):
                    if self.proc.poll() is not None:
                        break
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
        finally:
            sel.close()
        if buf.count(b"\n") < n:
            rc = self.proc.wait(timeout=5) if self.proc.poll() is None else self.proc.returncode
            pytest.fail(
                f"flotilla server exited (status {rc}) before printing its export line; stdout {buf!r}\n"
                f"stderr:\n{self.stderr_tail()}",
                pytrace=False,
            )
        return [line.decode() for line in buf.split(b"\n")[:n]]

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"flotilla server exited (status {self.proc.returncode}) while starting\n"
                    f"stderr:\n{self.stderr_tail()}",
                    pytrace=False,
                )
            try:
                ca = self.env.get("AWS_CA_BUNDLE")
                context = ssl.create_default_context(cafile=ca) if ca else None
                with urllib.request.urlopen(self.endpoint + "/health", timeout=2, context=context) as r:
                    if r.status == 200:
                        return
                    last = r.status
            except (urllib.error.URLError, OSError) as e:
                last = e
            time.sleep(0.1)
        self.kill()
        pytest.fail(
            f"flotilla server at {self.endpoint} not healthy within {timeout:.0f}s (last: {last!r})\n"
            f"stderr:\n{self.stderr_tail()}",
            pytrace=False,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait (bounded). Returns the exit status; SIGKILLs and fails on a hang."""
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(
                    f"flotilla server did not exit within {timeout:.0f}s of SIGTERM\nstderr:\n{self.stderr_tail()}",
                    pytrace=False,
                )
        self._close()
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL: no chance to flush or clean up."""
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close()
        return self.proc.returncode

    def _close(self) -> None:
        if self.proc and self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()


def make_client(
    env: dict[str, str], *, access_key: str | None = None, secret_key: str | None = None, service: str = "ecs"
):
    """A boto3 client (ECS unless `service` says otherwise) built from the server's export values
    (not from the ambient environment)."""
    return boto3.session.Session().client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=access_key or env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret_key or env["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    data: Any = field(default=None)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def error(self) -> str:
        """The error text the CLI printed (empty on success)."""
        return "" if self.ok else self.stderr.strip()


class AwsCli:
    """Runs `aws` from this virtualenv against one server, with only that server's settings."""

    def __init__(self, env: dict[str, str], workdir: Path):
        self.exe = os.path.join(sys.prefix, "bin", "aws")
        if not os.access(self.exe, os.X_OK):
            pytest.fail(f"the aws CLI is not installed in the virtualenv ({self.exe})", pytrace=False)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        base.update(env)
        # Keep a developer's ~/.aws out of it.
        base["AWS_CONFIG_FILE"] = str(self.workdir / "no-config")
        base["AWS_SHARED_CREDENTIALS_FILE"] = str(self.workdir / "no-credentials")
        base["AWS_PAGER"] = ""
        self.env = base

    def __call__(self, *args: str, timeout: float = CLI_TIMEOUT, output_json: bool = True) -> CliResult:
        argv = [self.exe, *args]
        if output_json:
            argv += ["--output", "json"]
        try:
            p = subprocess.run(
                argv, env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"`aws {' '.join(args)}` did not finish within {timeout:.0f}s: {e}", pytrace=False)
        res = CliResult(list(args), p.returncode, p.stdout, p.stderr)
        if p.returncode == 0 and output_json and p.stdout.strip():
            try:
                res.data = json.loads(p.stdout)
            except json.JSONDecodeError as e:
                pytest.fail(f"`aws {' '.join(args)}` printed invalid JSON ({e}): {p.stdout!r}", pytrace=False)
        return res


# ----------------------------------------------------------------------------------------------
# shared helpers


def container(name: str = "app", image: str = "public.ecr.aws/docker/library/nginx:latest", **extra) -> dict:
    c = {"name": name, "image": image, "memory": 128, "essential": True}
    c.update(extra)
    return c


def register_td(ecs, family: str, **extra) -> dict:
    return ecs.register_task_definition(family=family, containerDefinitions=[container()], **extra)["taskDefinition"]


def register_instance(ecs, cluster: str, **extra) -> dict:
    kwargs = dict(
        cluster=cluster,
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 3943},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375", "2376", "51678", "51679"]},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
        ],
        versionInfo={"agentVersion": "1.80.0", "agentHash": "abc1234", "dockerVersion": "DockerVersion: 24.0.5"},
    )
    kwargs.update(extra)
    return ecs.register_container_instance(**kwargs)["containerInstance"]


def paginate(ecs, operation: str, key: str, page_size: int, **params) -> list[list]:
    """Every page botocore's paginator yields, as a list of that page's items."""
    paginator = ecs.get_paginator(operation)
    return [page[key] for page in paginator.paginate(PaginationConfig={"PageSize": page_size}, **params)]


def assert_pages(pages: list[list], page_size: int, expected: list | set, *, ordered: bool = False) -> None:
    """Pages hold exactly `page_size` items except a non-empty last one, and together every expected
    item exactly once."""
    flat = [x for p in pages for x in p]
    assert len(flat) == len(set(flat)), f"an item came more than once: {flat}"
    if ordered:
        assert flat == list(expected)
    else:
        assert set(flat) == set(expected), f"missing {set(expected) - set(flat)}, extra {set(flat) - set(expected)}"
    if not expected:
        assert pages == [[]], f"an empty listing should be one empty page, got {pages}"
        return
    for i, p in enumerate(pages[:-1]):
        assert len(p) == page_size, f"page {i} has {len(p)} items, not the requested {page_size}: {pages}"
    assert 1 <= len(pages[-1]) <= page_size, f"last page has {len(pages[-1])} items: {pages}"
    assert len(pages) == -(-len(flat) // page_size), f"{len(pages)} pages for {len(flat)} items of {page_size}"


def wait_until(pred, timeout: float = 10.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last value {last!r})")


def assert_error(excinfo, code: str) -> dict:
    """A modeled/unmodeled error with the given code, a non-empty message and a request id."""
    resp = excinfo.value.response
    assert resp["Error"]["Code"] == code, resp
    assert resp["Error"].get("Message"), f"empty error message: {resp}"
    assert resp["ResponseMetadata"].get("RequestId"), f"no request id: {resp}"
    assert 400 <= resp["ResponseMetadata"]["HTTPStatusCode"] < 500, resp
    return resp
