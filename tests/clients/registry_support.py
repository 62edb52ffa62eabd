"""A private registry for the client tests: Debian's `docker-registry` serving plain HTTP on a free
127.0.0.1 port with htpasswd (bcrypt) basic auth and a temporary storage directory, and pushes to
it through the Docker Engine API with the registry's credentials in `X-Registry-Auth` (never
`docker login`, which would write the host's ~/.docker/config.json). The Rust twin is
crates/images/src/registry.rs.

Docker treats 127.0.0.0/8 registries as insecure (plain HTTP) by default, and the registry accepts
basic auth without TLS. A missing `docker-registry` or `htpasswd` fails the test that needs them
(`pytest.fail`), never skips it.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from agent_support import free_port

REGISTRY_BIN = "docker-registry"
HTPASSWD_BIN = "htpasswd"
DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_API = "/v1.41"
START_TIMEOUT = 20.0


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the Docker Engine's unix socket."""

    def __init__(self, path: str, timeout: float = 300):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def engine(method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One Docker Engine API call; returns the status and the whole body."""
    conn = _UnixConnection(DOCKER_SOCKET)
    try:
        conn.request(method, DOCKER_API + path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def stream_error(body: bytes) -> str | None:
    """The first `error` of a JSON-lines progress stream (push, pull), if any."""
    for line in body.decode(errors="replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if item.get("error") or item.get("errorDetail"):
            return item.get("error") or item["errorDetail"].get("message") or line
    return None


def remove_local_image(image: str) -> None:
    """Removes the engine's copy of `image` (absent is fine), so that the next pull goes to the registry."""
    status, body = engine("DELETE", f"/images/{urllib.parse.quote(image, safe='')}?force=true")
    assert status in (200, 404), f"removing {image}: {status} {body[:300]!r}"


def image_present(image: str) -> bool:
    status, _ = engine("GET", f"/images/{urllib.parse.quote(image, safe='')}/json")
    return status == 200


class LocalRegistry:
    """A running registry admitting one user; `stop()` (or the context manager) kills it."""

    def __init__(self, username: str, password: str):
        for program, package in ((REGISTRY_BIN, "docker-registry"), (HTPASSWD_BIN, "apache2-utils")):
            if not shutil.which(program):
                pytest.fail(f"`{program}` is missing: install the Debian package {package}", pytrace=False)
        self.username = username
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="flotilla-registry-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def auth_header(self, password: str | None = None) -> str:
        payload = {
            "username": self.username,
            "password": self.password if password is None else password,
            "serveraddress": self.host,
        }
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()

    def log(self) -> str:
        try:
            return (self.dir / "registry.log").read_text(errors="replace")[-3000:]
        except OSError:
            return "<no registry log>"

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            conn.close()
            return status == 401
        except OSError:
            return False

    def start(self) -> "LocalRegistry":
        line = subprocess.run(
            [HTPASSWD_BIN, "-Bbn", self.username, self.password], capture_output=True, text=True, check=True
        ).stdout.strip()
        (self.dir / "htpasswd").write_text(line + "\n")
        for _attempt in range(3):
            self.port = free_port()
            (self.dir / "config.yml").write_text(
                "version: 0.1\n"
                "log:\n  level: warn\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'storage'}\n"
                f"http:\n  addr: {self.host}\n  secret: flotilla-test-registry\n"
                f"auth:\n  htpasswd:\n    realm: flotilla\n    path: {self.dir / 'htpasswd'}\n"
            )
            log = open(self.dir / "registry.log", "ab")
            self.proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(self.dir / "config.yml")], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
            log.close()
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._answers():
                    return self
                time.sleep(0.1)
            self._kill()
        raise AssertionError(f"the registry did not answer on {self.host}; its log:\n{self.log()}")

    def push(self, local_image: str, name: str, tag: str) -> str:
        """Tags `local_image` as HOST/name:tag, pushes it with the registry's credentials, removes the
        local tag and returns the reference."""
        repo = f"{self.host}/{name}"
        q = urllib.parse.urlencode({"repo": repo, "tag": tag})
        status, body = engine("POST", f"/images/{urllib.parse.quote(local_image, safe='')}/tag?{q}")
        assert status == 201, f"tagging {local_image}: {status} {body[:300]!r}"
        status, body = engine(
            "POST",
            f"/images/{urllib.parse.quote(repo, safe='')}/push?tag={tag}",
            headers={"X-Registry-Auth": self.auth_header()},
        )
        error = stream_error(body)
        assert status == 200 and error is None, f"pushing {repo}:{tag}: {status} {error or body[:300]!r}\n{self.log()}"
        reference = f"{repo}:{tag}"
        remove_local_image(reference)
        return reference

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
