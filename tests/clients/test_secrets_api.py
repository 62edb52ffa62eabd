"""SSM Parameter Store and Secrets Manager end to end through boto3 and the aws CLI: parameters
with versions, SecureString decryption, paths; secrets with staged versions, JSON values, the
deletion window and restore; the services' error codes; and the store file on disk, which must
never hold a secret value in the clear."""

from __future__ import annotations

import json
import os
import stat

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from support import assert_error


def client(env, service):
    return boto3.session.Session().client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def ssm(server_env):
    return client(server_env, "ssm")


@pytest.fixture(scope="module")
def sm(server_env):
    return client(server_env, "secretsmanager")


def test_parameters_put_get_versions_paths_and_delete(ssm, uid):
    base = f"/t-{uid}"
    assert ssm.put_parameter(Name=f"{base}/db/host", Value="db1", Type="String")["Version"] == 1
    with pytest.raises(ClientError) as e:
        ssm.put_parameter(Name=f"{base}/db/host", Value="db2", Type="String")
    assert_error(e, "ParameterAlreadyExists")
    assert ssm.put_parameter(Name=f"{base}/db/host", Value="db2", Overwrite=True)["Version"] == 2
    ssm.put_parameter(Name=f"{base}/web/hosts", Value="a,b", Type="StringList", Tags=[{"Key": "team", "Value": "web"}])

    p = ssm.get_parameter(Name=f"{base}/db/host")["Parameter"]
    assert (p["Value"], p["Version"], p["Type"], p["DataType"]) == ("db2", 2, "String", "text")
    assert p["ARN"] == f"arn:aws:ssm:us-east-1:000000000000:parameter{base}/db/host"
    assert p["LastModifiedDate"].year >= 2024
    assert ssm.get_parameter(Name=f"{base}/db/host:1")["Parameter"]["Value"] == "db1"
    assert ssm.get_parameter(Name=p["ARN"])["Parameter"]["Value"] == "db2"
    with pytest.raises(ClientError) as e:
        ssm.get_parameter(Name=f"{base}/db/host:7")
    assert_error(e, "ParameterVersionNotFound")
    with pytest.raises(ClientError) as e:
        ssm.get_parameter(Name=f"{base}/missing")
    assert_error(e, "ParameterNotFound")

    got = ssm.get_parameters(Names=[f"{base}/db/host", f"{base}/missing"])
    assert [x["Name"] for x in got["Parameters"]] == [f"{base}/db/host"]
    assert got["InvalidParameters"] == [f"{base}/missing"]

    pages = ssm.get_paginator("get_parameters_by_path").paginate(
        Path=base, Recursive=True, PaginationConfig={"PageSize": 1}
    )
    names = [x["Name"] for page in pages for x in page["Parameters"]]
    assert names == [f"{base}/db/host", f"{base}/web/hosts"]
    assert ssm.get_parameters_by_path(Path=base)["Parameters"] == []

    described = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": [base]}, {"Key": "Type", "Values": ["StringList"]}]
    )["Parameters"]
    assert [(d["Name"], d["Type"]) for d in described] == [(f"{base}/web/hosts", "StringList")]
    assert "Value" not in described[0]

    deleted = ssm.delete_parameters(Names=[f"{base}/web/hosts", f"{base}/missing"])
    assert deleted["DeletedParameters"] == [f"{base}/web/hosts"]
    assert deleted["InvalidParameters"] == [f"{base}/missing"]
    ssm.delete_parameter(Name=f"{base}/db/host")
    with pytest.raises(ClientError) as e:
        ssm.delete_parameter(Name=f"{base}/db/host")
    assert_error(e, "ParameterNotFound")


def test_bad_parameters_get_validation_errors(ssm, uid):
    for kwargs in (
        {"Name": f"/t-{uid}/x", "Value": "v", "Type": "Number"},
        {"Name": f"aws-{uid}", "Value": "v", "Type": "String"},
        {"Name": f"/t-{uid}/x", "Value": "v", "Type": "String", "Overwrite": True, "Tags": [{"Key": "k", "Value": "v"}]},
        {"Name": f"/t-{uid}/x", "Value": "v" * 4097, "Type": "String"},
    ):
        with pytest.raises(ClientError) as e:
            ssm.put_parameter(**kwargs)
        assert_error(e, "ValidationException")


def test_secure_string_is_decrypted_only_when_asked(ssm, aws, uid):
    name = f"/t-{uid}/pw"
    ssm.put_parameter(Name=name, Value="hunter2-" + uid, Type="SecureString", KeyId="alias/mine")
    opaque = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    assert opaque != "hunter2-" + uid and uid not in opaque
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == "hunter2-" + uid
    meta = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"][0]
    assert (meta["Type"], meta["KeyId"]) == ("SecureString", "alias/mine")

    cli = aws("ssm", "get-parameter", "--name", name, "--with-decryption")
    assert cli.ok, cli.error
    assert cli.data["Parameter"]["Value"] == "hunter2-" + uid
    cli = aws("ssm", "put-parameter", "--name", f"/t-{uid}/cli", "--value", "from-cli", "--type", "String")
    assert cli.ok, cli.error
    assert cli.data["Version"] == 1
    cli = aws("ssm", "get-parameter", "--name", f"/t-{uid}/nope")
    assert not cli.ok and "ParameterNotFound" in cli.error


def test_secrets_json_versions_deletion_window_and_restore(sm, aws, uid):
    name = f"app/{uid}/db"
    created = sm.create_secret(Name=name, SecretString=json.dumps({"user": "app", "password": "p1"}), Description="db")
    arn = created["ARN"]
    assert arn.startswith(f"arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}-") and len(arn.rsplit("-", 1)[1]) == 6
    with pytest.raises(ClientError) as e:
        sm.create_secret(Name=name, SecretString="other")
    assert_error(e, "ResourceExistsException")

    v2 = sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"user": "app", "password": "p2"}))["VersionId"]
    current = sm.get_secret_value(SecretId=name)
    assert json.loads(current["SecretString"])["password"] == "p2"
    assert current["VersionId"] == v2 and current["VersionStages"] == ["AWSCURRENT"]
    previous = sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")
    assert json.loads(previous["SecretString"])["password"] == "p1"
    assert previous["VersionId"] == created["VersionId"]
    stages = sm.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert stages == {created["VersionId"]: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]}

    sm.update_secret(SecretId=name, Description="the db")
    assert sm.describe_secret(SecretId=name)["Description"] == "the db"
    listed = sm.list_secrets(Filters=[{"Key": "name", "Values": [f"app/{uid}/"]}])["SecretList"]
    assert [s["Name"] for s in listed] == [name]

    with pytest.raises(ClientError) as e:
        sm.delete_secret(SecretId=name, RecoveryWindowInDays=5)
    assert_error(e, "InvalidParameterException")
    deleted = sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    assert (deleted["DeletionDate"] - sm.describe_secret(SecretId=name)["DeletedDate"]).days == 7
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=name)
    resp = assert_error(e, "InvalidRequestException")
    assert resp["Error"]["Message"] == "You can't perform this operation on the secret because it was marked for deletion."
    assert sm.list_secrets(Filters=[{"Key": "name", "Values": [f"app/{uid}/"]}])["SecretList"] == []
    sm.restore_secret(SecretId=name)
    assert json.loads(sm.get_secret_value(SecretId=name)["SecretString"])["password"] == "p2"

    cli = aws("secretsmanager", "get-secret-value", "--secret-id", arn)
    assert cli.ok, cli.error
    assert json.loads(cli.data["SecretString"])["password"] == "p2"
    cli = aws("secretsmanager", "delete-secret", "--secret-id", arn, "--force-delete-without-recovery")
    assert cli.ok, cli.error
    with pytest.raises(ClientError) as e:
        sm.get_secret_value(SecretId=arn)
    resp = assert_error(e, "ResourceNotFoundException")
    assert resp["Error"]["Message"] == "Secrets Manager can't find the specified secret."


def test_binary_secrets_round_trip(sm, uid):
    sm.create_secret(Name=f"bin-{uid}", SecretBinary=b"\x00\x01binary")
    assert sm.get_secret_value(SecretId=f"bin-{uid}")["SecretBinary"] == b"\x00\x01binary"
    with pytest.raises(ClientError) as e:
        sm.create_secret(Name=f"both-{uid}", SecretBinary=b"x", SecretString="y")
    assert_error(e, "InvalidParameterException")


def test_the_store_on_disk_never_holds_a_value_in_the_clear(server, ssm, sm, uid):
    marker = f"plaintext-marker-{uid}"
    ssm.put_parameter(Name=f"/t-{uid}/disk", Value=marker + "-ssm", Type="SecureString")
    ssm.put_parameter(Name=f"/t-{uid}/disk-plain", Value=marker + "-string", Type="String")
    sm.create_secret(Name=f"disk-{uid}", SecretString=json.dumps({"password": marker + "-asm"}))
    store_file = server.data_dir / "store.redb"
    # The records reached the file (their names are stored in the clear) ...
    contents = b"".join(p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file())
    assert f"/t-{uid}/disk".encode() in contents and f"disk-{uid}".encode() in contents
    assert store_file.exists()
    # ... and no value did, in the store or anywhere else in the data directory.
    assert marker.encode() not in contents
    key_file = server.data_dir / "secrets.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_a_key_file_is_made_once_for_every_server_and_rotated(tmp_path):
    import subprocess

    from support import flotilla_bin

    key = tmp_path / "secrets.key"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}

    def run(*args):
        return subprocess.run([flotilla_bin(), "secrets-key", *args, "--key-file", str(key)],
                              capture_output=True, text=True, timeout=30, env=env)

    made = run("create")
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ids = lambda: [l.split(":", 1)[0] for l in key.read_text().splitlines() if l and not l.startswith("#")]
    assert len(ids()) == 1
    again = run("create")
    assert again.returncode != 0 and "already exists" in again.stderr, again.stderr
    assert len(ids()) == 1
    rotated = run("rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert len(ids()) == 2 and ids()[0] != ids()[1]
