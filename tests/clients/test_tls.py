"""TLS: a server started with `--tls auto` prints `export AWS_CA_BUNDLE=...` after its export
line, and boto3 and the aws CLI work over HTTPS with that bundle, as they would against AWS; a
client that does not trust the bundle is refused. One TLS server serves the whole module."""

from __future__ import annotations

import boto3
import botocore.config
import botocore.exceptions
import pytest

from support import AwsCli, ServerProcess, make_client


@pytest.fixture(scope="module")
def tls_server(workdir):
    srv = ServerProcess(workdir / "tls-data", workdir / "tls-server.stderr.log", ("--tls", "auto")).start()
    yield srv
    assert srv.stop() == 0, srv.stderr_tail()


def test_the_server_prints_an_https_endpoint_and_its_ca_bundle(tls_server):
    assert tls_server.endpoint.startswith("https://")
    bundle = tls_server.env["AWS_CA_BUNDLE"]
    assert bundle.endswith("ca.pem")
    assert open(bundle).read().startswith("-----BEGIN CERTIFICATE-----")


def test_boto3_works_with_aws_ca_bundle(tls_server, monkeypatch, uid):
    # botocore reads AWS_CA_BUNDLE from the environment, as users set it.
    monkeypatch.setenv("AWS_CA_BUNDLE", tls_server.env["AWS_CA_BUNDLE"])
    ecs = make_client(tls_server.env)
    ecs.create_cluster(clusterName=f"tls-{uid}")
    out = ecs.describe_clusters(clusters=[f"tls-{uid}"])
    assert out["clusters"][0]["status"] == "ACTIVE"


def test_boto3_without_the_bundle_is_refused(tls_server, monkeypatch):
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    ecs = boto3.session.Session().client(
        "ecs",
        endpoint_url=tls_server.endpoint,
        region_name=tls_server.env["AWS_DEFAULT_REGION"],
        aws_access_key_id=tls_server.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=tls_server.env["AWS_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(botocore.exceptions.SSLError):
        ecs.list_clusters()


def test_the_aws_cli_works_with_aws_ca_bundle(tls_server, workdir, uid):
    aws = AwsCli(tls_server.env, workdir / "tls-cli")
    res = aws("ecs", "create-cluster", "--cluster-name", f"tls-cli-{uid}")
    assert res.ok, res.error
    res = aws("ecs", "list-clusters")
    assert res.ok, res.error
    assert any(a.endswith(f"/tls-cli-{uid}") for a in res.data["clusterArns"])


def test_the_aws_cli_without_the_bundle_is_refused(tls_server, workdir):
    env = {k: v for k, v in tls_server.env.items() if k != "AWS_CA_BUNDLE"}
    aws = AwsCli(env, workdir / "tls-cli-untrusting")
    res = aws("ecs", "list-clusters", "--cli-read-timeout", "5", "--cli-connect-timeout", "5")
    assert not res.ok
    assert "SSL" in res.error or "certificate" in res.error.lower(), res.error
