"""Join tokens from a client's point of view: the credentials an agent earns with a token are
refused by every ECS operation with AccessDeniedException (boto3 and the aws CLI alike), and a
revoked token joins nothing. The tokens are minted with the root key pair through `flotilla token`."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from support import AwsCli, flotilla_bin, make_client


def flotilla(server_env, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLOTILLA_"))}
    env.update(server_env)
    return subprocess.run([flotilla_bin(), *args], env=env, capture_output=True, text=True, timeout=30)


def join(endpoint: str, token: str, cluster: str) -> tuple[int, dict]:
    body = json.dumps({"token": token, "registration": {"cluster": cluster}}).encode()
    req = urllib.request.Request(endpoint + "/v1/join", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def mint(server_env, cluster: str) -> str:
    p = flotilla(server_env, "token", "create", "--cluster", cluster)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_an_agents_credentials_are_denied_every_ecs_operation(server, server_env, cluster, workdir):
    status, out = join(server.endpoint, mint(server_env, cluster), cluster)
    assert status == 200, out
    creds = out["credentials"]
    assert out["containerInstance"]["containerInstanceArn"].split("/")[-2] == cluster

    ecs = make_client(server_env, access_key=creds["accessKeyId"], secret_key=creds["secretAccessKey"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.create_cluster(clusterName="not-allowed")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    env = dict(server_env, AWS_ACCESS_KEY_ID=creds["accessKeyId"], AWS_SECRET_ACCESS_KEY=creds["secretAccessKey"])
    res = AwsCli(env, workdir / "agent-cli")("ecs", "list-clusters")
    assert not res.ok and "AccessDeniedException" in res.error, res.error


def test_a_revoked_token_joins_nothing(server, server_env, cluster):
    token = mint(server_env, cluster)
    p = flotilla(server_env, "token", "revoke", token.split(".")[1])
    assert p.returncode == 0, p.stderr
    status, out = join(server.endpoint, token, cluster)
    assert status == 400 and out["__type"] == "AccessDeniedException", out
    assert "revoked" in out["message"]
