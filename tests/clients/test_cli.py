"""The real aws CLI (from this virtualenv) against the server, configured only through the export
line's environment variables."""

import json
import time

from support import register_td


def ok(res):
    assert res.ok, f"`aws {' '.join(res.args)}` failed ({res.returncode}): {res.stderr}"
    return res.data


def test_cli_cluster_and_task_definition_round_trip(aws, uid, tmp_path):
    name = f"cli-{uid}"
    created = ok(aws("ecs", "create-cluster", "--cluster-name", name))
    assert created["cluster"]["clusterName"] == name
    assert created["cluster"]["status"] == "ACTIVE"

    described = ok(aws("ecs", "describe-clusters", "--clusters", name, "--include", "SETTINGS"))
    assert described["failures"] == []
    (c,) = described["clusters"]
    assert c["clusterArn"] == created["cluster"]["clusterArn"]
    assert {"name": "containerInsights", "value": "disabled"} in c["settings"]

    family = f"cli-{uid}"
    spec = {
        "family": family,
        "networkMode": "bridge",
        "containerDefinitions": [
            {
                "name": "web",
                "image": "nginx:1.27",
                "memory": 256,
                "essential": True,
                "portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}],
                "environment": [{"name": "MODE", "value": "cli"}],
            }
        ],
        "tags": [{"key": "via", "value": "cli"}],
    }
    spec_file = tmp_path / "td.json"
    spec_file.write_text(json.dumps(spec))
    registered = ok(aws("ecs", "register-task-definition", "--cli-input-json", f"file://{spec_file}"))
    td = registered["taskDefinition"]
    assert td["family"] == family and td["revision"] == 1 and td["status"] == "ACTIVE"
    assert registered["tags"] == [{"key": "via", "value": "cli"}]

    listed = ok(aws("ecs", "list-task-definitions", "--family-prefix", family))
    assert listed["taskDefinitionArns"] == [td["taskDefinitionArn"]]

    got = ok(aws("ecs", "describe-task-definition", "--task-definition", f"{family}:1", "--include", "TAGS"))
    (web,) = got["taskDefinition"]["containerDefinitions"]
    assert web["image"] == "nginx:1.27"
    assert web["portMappings"][0]["hostPort"] == 8080
    assert {"name": "MODE", "value": "cli"} in web["environment"]
    assert got["tags"] == [{"key": "via", "value": "cli"}]


def test_cli_list_clusters_pagination(aws, ecs, uid):
    for i in range(3):
        ecs.create_cluster(clusterName=f"clipg-{uid}-{i}")
    expected = [a for p in ecs.get_paginator("list_clusters").paginate() for a in p["clusterArns"]]
    assert len(expected) >= 3

    # The CLI follows nextToken by itself, one item per request here.
    everything = ok(aws("ecs", "list-clusters", "--page-size", "1"))
    assert everything["clusterArns"] == expected
    assert "NextToken" not in everything

    first = ok(aws("ecs", "list-clusters", "--max-items", "1"))
    assert first["clusterArns"] == expected[:1]
    assert first.get("NextToken"), first
    second = ok(aws("ecs", "list-clusters", "--max-items", "1", "--starting-token", first["NextToken"]))
    assert second["clusterArns"] == expected[1:2]
    rest = ok(aws("ecs", "list-clusters", "--max-items", "1000", "--starting-token", second["NextToken"]))
    assert rest["clusterArns"] == expected[2:]
    assert "NextToken" not in rest


def test_cli_error_exit(aws, uid):
    res = aws("ecs", "describe-task-definition", "--task-definition", f"missing-{uid}")
    assert res.returncode != 0
    assert "ClientException" in res.error
    assert "DescribeTaskDefinition" in res.error

    res = aws("ecs", "list-services", "--cluster", f"missing-{uid}")
    assert res.returncode != 0
    assert "ClusterNotFoundException" in res.error


def test_cli_wait_services_inactive(aws, ecs, cluster, uid):
    td = register_td(ecs, f"cliw-{uid}")
    name = f"cliw-{uid}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=1)
    deleted = ok(aws("ecs", "delete-service", "--cluster", cluster, "--service", name, "--force"))
    assert deleted["service"]["status"] in ("DRAINING", "INACTIVE")
    # The CLI's waiter polls every 15 s; the server retires the service within about a second, so
    # this should be over after the first or second poll.
    t0 = time.monotonic()
    res = aws("ecs", "wait", "services-inactive", "--cluster", cluster, "--services", name, output_json=False, timeout=40)
    assert res.ok, res.stderr
    assert time.monotonic() - t0 < 20
    svc = ok(aws("ecs", "describe-services", "--cluster", cluster, "--services", name))["services"][0]
    assert svc["status"] == "INACTIVE"


def test_cli_wait_services_stable(aws, ecs, cluster, uid):
    td = register_td(ecs, f"clis-{uid}")
    name = f"clis-{uid}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    t0 = time.monotonic()
    res = aws("ecs", "wait", "services-stable", "--cluster", cluster, "--services", name, output_json=False, timeout=40)
    assert res.ok, res.stderr
    assert time.monotonic() - t0 < 20
