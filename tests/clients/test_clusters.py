"""Clusters through boto3: CreateCluster, DescribeClusters (with include), ListClusters,
UpdateClusterSettings and DeleteCluster."""

import re

import pytest

from support import assert_error

CLUSTER_ARN = re.compile(r"^arn:aws:ecs:us-east-1:\d{12}:cluster/(?P<name>[A-Za-z0-9_-]+)$")


def all_cluster_arns(ecs):
    return [a for page in ecs.get_paginator("list_clusters").paginate() for a in page["clusterArns"]]


def test_create_cluster_returns_an_active_cluster(ecs, uid):
    name = f"crud-{uid}"
    resp = ecs.create_cluster(
        clusterName=name,
        tags=[{"key": "team", "value": "infra"}],
        settings=[{"name": "containerInsights", "value": "enabled"}],
    )
    assert resp["ResponseMetadata"]["RequestId"]
    c = resp["cluster"]
    assert c["clusterName"] == name
    assert CLUSTER_ARN.match(c["clusterArn"]).group("name") == name
    assert c["status"] == "ACTIVE"
    assert c["registeredContainerInstancesCount"] == 0
    assert c["runningTasksCount"] == 0
    assert c["pendingTasksCount"] == 0
    assert c["activeServicesCount"] == 0
    assert c["tags"] == [{"key": "team", "value": "infra"}]
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]


def test_create_cluster_is_idempotent_for_an_active_cluster(ecs, uid):
    name = f"idem-{uid}"
    first = ecs.create_cluster(clusterName=name)["cluster"]
    second = ecs.create_cluster(clusterName=name)["cluster"]
    assert second["clusterArn"] == first["clusterArn"]
    assert second["status"] == "ACTIVE"
    assert all_cluster_arns(ecs).count(first["clusterArn"]) == 1


def test_create_cluster_without_a_name_is_default(ecs):
    c = ecs.create_cluster()["cluster"]
    assert c["clusterName"] == "default"
    assert c["status"] == "ACTIVE"
    # Requests without `cluster` act on the default cluster.
    described = ecs.describe_clusters()["clusters"]
    assert [d["clusterName"] for d in described] == ["default"]


def test_describe_clusters_include(ecs, uid):
    name = f"incl-{uid}"
    arn = ecs.create_cluster(
        clusterName=name,
        tags=[{"key": "k1", "value": "v1"}],
        settings=[{"name": "containerInsights", "value": "enabled"}],
    )["cluster"]["clusterArn"]

    plain = ecs.describe_clusters(clusters=[name])
    assert plain["failures"] == []
    (c,) = plain["clusters"]
    assert c["clusterArn"] == arn and c["status"] == "ACTIVE"
    # Without include, the optional parts are not returned.
    assert not c.get("tags"), c
    assert not c.get("settings"), c
    assert not c.get("statistics"), c

    full = ecs.describe_clusters(clusters=[arn], include=["TAGS", "SETTINGS", "STATISTICS"])
    (c,) = full["clusters"]
    assert c["clusterName"] == name
    assert c["tags"] == [{"key": "k1", "value": "v1"}]
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]
    stats = {s["name"]: s["value"] for s in c["statistics"]}
    assert stats, c
    for key in ("runningEC2TasksCount", "pendingEC2TasksCount", "activeEC2ServiceCount"):
        assert stats.get(key) == "0", stats

    only_tags = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"][0]
    assert only_tags["tags"] == [{"key": "k1", "value": "v1"}]
    assert not only_tags.get("settings")


def test_describe_clusters_reports_missing_ones_as_failures(ecs, uid):
    name = f"there-{uid}"
    ecs.create_cluster(clusterName=name)
    resp = ecs.describe_clusters(clusters=[name, f"absent-{uid}"])
    assert [c["clusterName"] for c in resp["clusters"]] == [name]
    (f,) = resp["failures"]
    assert f["reason"] == "MISSING"
    assert f["arn"].endswith(f":cluster/absent-{uid}")


def test_list_clusters_lists_active_clusters(ecs, uid):
    arns = {ecs.create_cluster(clusterName=f"list-{uid}-{i}")["cluster"]["clusterArn"] for i in range(3)}
    listed = all_cluster_arns(ecs)
    assert arns <= set(listed)
    assert len(listed) == len(set(listed))
    assert all(CLUSTER_ARN.match(a) for a in listed), listed


def test_update_cluster_settings(ecs, cluster):
    resp = ecs.update_cluster_settings(cluster=cluster, settings=[{"name": "containerInsights", "value": "enabled"}])
    assert resp["cluster"]["clusterName"] == cluster
    assert {"name": "containerInsights", "value": "enabled"} in resp["cluster"]["settings"]
    described = ecs.describe_clusters(clusters=[cluster], include=["SETTINGS"])["clusters"][0]
    assert {"name": "containerInsights", "value": "enabled"} in described["settings"]

    ecs.update_cluster_settings(cluster=cluster, settings=[{"name": "containerInsights", "value": "disabled"}])
    described = ecs.describe_clusters(clusters=[cluster], include=["SETTINGS"])["clusters"][0]
    insights = [s for s in described["settings"] if s["name"] == "containerInsights"]
    assert insights == [{"name": "containerInsights", "value": "disabled"}]


def test_update_cluster_settings_rejects_bad_values(ecs, cluster):
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.update_cluster_settings(cluster=cluster, settings=[{"name": "containerInsights", "value": "maybe"}])
    assert_error(e, "InvalidParameterException")


def test_update_cluster_settings_on_a_missing_cluster(ecs, uid):
    with pytest.raises(ecs.exceptions.ClusterNotFoundException) as e:
        ecs.update_cluster_settings(
            cluster=f"nope-{uid}", settings=[{"name": "containerInsights", "value": "enabled"}]
        )
    assert_error(e, "ClusterNotFoundException")


def test_delete_cluster(ecs, uid):
    name = f"del-{uid}"
    arn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    resp = ecs.delete_cluster(cluster=name)
    assert resp["cluster"]["clusterArn"] == arn
    assert resp["cluster"]["status"] == "INACTIVE"
    assert arn not in all_cluster_arns(ecs)
    # A deleted cluster is either still discoverable as INACTIVE or reported missing.
    described = ecs.describe_clusters(clusters=[arn])
    for c in described["clusters"]:
        assert c["status"] == "INACTIVE"
    for f in described["failures"]:
        assert f["reason"] == "MISSING"
    assert len(described["clusters"]) + len(described["failures"]) == 1
    # Nothing can be done in it any more.
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.list_services(cluster=name)
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.delete_cluster(cluster=name)
    # The name can be used again.
    again = ecs.create_cluster(clusterName=name)["cluster"]
    assert again["status"] == "ACTIVE" and again["clusterArn"] == arn
    assert arn in all_cluster_arns(ecs)


def test_create_cluster_rejects_a_bad_name(ecs):
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.create_cluster(clusterName="not a valid name!")
    assert_error(e, "InvalidParameterException")
