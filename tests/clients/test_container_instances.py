"""Container instances and attributes through boto3: RegisterContainerInstance,
DescribeContainerInstances, ListContainerInstances, UpdateContainerInstancesState,
DeregisterContainerInstance, PutAttributes, ListAttributes and DeleteAttributes."""

import re

import pytest

from support import assert_error, register_instance

CI_ARN = re.compile(r"^arn:aws:ecs:us-east-1:\d{12}:container-instance/(?P<cluster>[A-Za-z0-9_-]+)/(?P<id>[a-f0-9]+)$")


def resources(ci, key):
    out = {}
    for r in ci[key]:
        out[r["name"]] = r.get("stringSetValue") if r["type"] == "STRINGSET" else r.get("integerValue")
    return out


def list_instances(ecs, cluster, **params):
    pages = ecs.get_paginator("list_container_instances").paginate(cluster=cluster, **params)
    return [a for p in pages for a in p["containerInstanceArns"]]


def cluster_counts(ecs, cluster):
    return ecs.describe_clusters(clusters=[cluster])["clusters"][0]


def test_register_describe_list_container_instance(ecs, cluster):
    ci = register_instance(
        ecs,
        cluster,
        attributes=[{"name": "stack", "value": "prod"}, {"name": "custom.flag"}],
    )
    m = CI_ARN.match(ci["containerInstanceArn"])
    assert m and m.group("cluster") == cluster, ci["containerInstanceArn"]
    assert ci["status"] == "ACTIVE"
    assert ci["ec2InstanceId"]
    assert ci["runningTasksCount"] == 0 and ci["pendingTasksCount"] == 0
    assert ci["versionInfo"]["agentVersion"] == "1.80.0"
    reg = resources(ci, "registeredResources")
    assert reg["CPU"] == 2048 and reg["MEMORY"] == 3943
    assert set(reg["PORTS"]) == {"22", "2375", "2376", "51678", "51679"}
    # Nothing runs on it, so everything is still there.
    rem = resources(ci, "remainingResources")
    assert rem["CPU"] == 2048 and rem["MEMORY"] == 3943
    attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
    assert attrs["stack"] == "prod"
    assert "custom.flag" in attrs

    arn = ci["containerInstanceArn"]
    short_id = m.group("id")
    for ref in (arn, short_id):
        described = ecs.describe_container_instances(cluster=cluster, containerInstances=[ref])
        assert described["failures"] == []
        assert [d["containerInstanceArn"] for d in described["containerInstances"]] == [arn]
        assert resources(described["containerInstances"][0], "registeredResources")["CPU"] == 2048

    assert list_instances(ecs, cluster) == [arn]
    assert cluster_counts(ecs, cluster)["registeredContainerInstancesCount"] == 1


def test_reregistering_keeps_the_arn(ecs, cluster):
    first = register_instance(ecs, cluster, attributes=[{"name": "gen", "value": "1"}])
    arn = first["containerInstanceArn"]
    again = register_instance(
        ecs,
        cluster,
        containerInstanceArn=arn,
        attributes=[{"name": "gen", "value": "2"}],
        totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 7986},
        ],
    )
    assert again["containerInstanceArn"] == arn
    assert again["status"] == "ACTIVE"
    assert resources(again, "registeredResources")["CPU"] == 4096
    assert {a["name"]: a.get("value") for a in again["attributes"]}["gen"] == "2"
    assert list_instances(ecs, cluster) == [arn]
    assert cluster_counts(ecs, cluster)["registeredContainerInstancesCount"] == 1


def test_describe_container_instances_reports_missing(ecs, cluster):
    arn = register_instance(ecs, cluster)["containerInstanceArn"]
    resp = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn, "0123456789abcdef0123456789abcdef"])
    assert [c["containerInstanceArn"] for c in resp["containerInstances"]] == [arn]
    (f,) = resp["failures"]
    assert f["reason"] == "MISSING"
    assert f["arn"].endswith("0123456789abcdef0123456789abcdef")


def test_cluster_with_instances_cannot_be_deleted(ecs, cluster):
    arn = register_instance(ecs, cluster)["containerInstanceArn"]
    with pytest.raises(ecs.exceptions.ClusterContainsContainerInstancesException) as e:
        ecs.delete_cluster(cluster=cluster)
    assert_error(e, "ClusterContainsContainerInstancesException")
    ecs.deregister_container_instance(cluster=cluster, containerInstance=arn)
    assert ecs.delete_cluster(cluster=cluster)["cluster"]["status"] == "INACTIVE"


def test_update_container_instances_state(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    b = register_instance(ecs, cluster)["containerInstanceArn"]

    resp = ecs.update_container_instances_state(cluster=cluster, containerInstances=[a], status="DRAINING")
    assert resp["failures"] == []
    assert [(c["containerInstanceArn"], c["status"]) for c in resp["containerInstances"]] == [(a, "DRAINING")]

    assert ecs.describe_container_instances(cluster=cluster, containerInstances=[a])["containerInstances"][0][
        "status"
    ] == "DRAINING"
    assert list_instances(ecs, cluster, status="DRAINING") == [a]
    assert list_instances(ecs, cluster, status="ACTIVE") == [b]
    assert sorted(list_instances(ecs, cluster)) == sorted([a, b])

    back = ecs.update_container_instances_state(cluster=cluster, containerInstances=[a], status="ACTIVE")
    assert back["containerInstances"][0]["status"] == "ACTIVE"
    assert list_instances(ecs, cluster, status="DRAINING") == []

    missing = ecs.update_container_instances_state(
        cluster=cluster, containerInstances=["fedcba9876543210fedcba9876543210"], status="DRAINING"
    )
    assert missing["containerInstances"] == []
    assert [f["reason"] for f in missing["failures"]] == ["MISSING"]


def test_update_container_instances_state_only_takes_active_or_draining(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.update_container_instances_state(cluster=cluster, containerInstances=[a], status="REGISTERING")
    assert_error(e, "InvalidParameterException")


def test_deregister_container_instance(ecs, cluster):
    arn = register_instance(ecs, cluster)["containerInstanceArn"]
    resp = ecs.deregister_container_instance(cluster=cluster, containerInstance=arn)
    assert resp["containerInstance"]["containerInstanceArn"] == arn
    assert resp["containerInstance"]["status"] == "INACTIVE"
    assert list_instances(ecs, cluster) == []
    assert cluster_counts(ecs, cluster)["registeredContainerInstancesCount"] == 0


def test_container_instance_calls_on_a_missing_cluster(ecs, uid):
    with pytest.raises(ecs.exceptions.ClusterNotFoundException) as e:
        register_instance(ecs, f"nope-{uid}")
    assert_error(e, "ClusterNotFoundException")
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.list_container_instances(cluster=f"nope-{uid}")


# ----------------------------------------------------------------------------------------------
# attributes


def list_attrs(ecs, cluster, **params):
    pages = ecs.get_paginator("list_attributes").paginate(cluster=cluster, targetType="container-instance", **params)
    return [a for p in pages for a in p["attributes"]]


def test_put_list_delete_attributes(ecs, cluster):
    ci = register_instance(ecs, cluster)
    arn = ci["containerInstanceArn"]
    short_id = arn.rsplit("/", 1)[1]

    put = ecs.put_attributes(
        cluster=cluster,
        attributes=[
            {"name": "zone", "value": "a", "targetType": "container-instance", "targetId": arn},
            {"name": "gpu", "targetId": short_id},
        ],
    )["attributes"]
    assert {(a["name"], a.get("value")) for a in put} == {("zone", "a"), ("gpu", None)}

    zone = list_attrs(ecs, cluster, attributeName="zone")
    assert [(a["name"], a["value"], a["targetId"], a.get("targetType")) for a in zone] == [
        ("zone", "a", arn, "container-instance")
    ]
    assert list_attrs(ecs, cluster, attributeName="zone", attributeValue="a") == zone
    assert list_attrs(ecs, cluster, attributeName="zone", attributeValue="b") == []
    names = {a["name"] for a in list_attrs(ecs, cluster)}
    assert {"zone", "gpu"} <= names

    # Putting an attribute again replaces its value.
    ecs.put_attributes(cluster=cluster, attributes=[{"name": "zone", "value": "b", "targetId": arn}])
    assert [a["value"] for a in list_attrs(ecs, cluster, attributeName="zone")] == ["b"]
    described = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])["containerInstances"][0]
    assert {"name": "zone", "value": "b"} in [{k: v for k, v in a.items() if k in ("name", "value")} for a in described["attributes"]]

    deleted = ecs.delete_attributes(cluster=cluster, attributes=[{"name": "zone", "targetId": arn}])["attributes"]
    assert [a["name"] for a in deleted] == ["zone"]
    assert list_attrs(ecs, cluster, attributeName="zone") == []
    assert [a["name"] for a in list_attrs(ecs, cluster, attributeName="gpu")] == ["gpu"]


def test_put_attributes_on_a_missing_target(ecs, cluster):
    with pytest.raises(ecs.exceptions.TargetNotFoundException) as e:
        ecs.put_attributes(
            cluster=cluster,
            attributes=[{"name": "zone", "value": "a", "targetId": "0123456789abcdef0123456789abcdef"}],
        )
    assert_error(e, "TargetNotFoundException")
    with pytest.raises(ecs.exceptions.TargetNotFoundException) as e:
        ecs.delete_attributes(
            cluster=cluster, attributes=[{"name": "zone", "targetId": "0123456789abcdef0123456789abcdef"}]
        )
    assert_error(e, "TargetNotFoundException")
