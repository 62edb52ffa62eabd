"""Services through boto3: CreateService, DescribeServices, ListServices, UpdateService,
DeleteService (with force), and botocore's ServicesInactive / ServicesStable waiters."""

import re
import time

import pytest

from support import assert_error, register_td

SVC_ARN = re.compile(r"^arn:aws:ecs:us-east-1:\d{12}:service/(?P<cluster>[A-Za-z0-9_-]+)/(?P<name>[A-Za-z0-9_-]+)$")
FAST = {"Delay": 1, "MaxAttempts": 10}


@pytest.fixture
def td(ecs, uid):
    return register_td(ecs, f"svc-{uid}")


def list_services(ecs, cluster):
    pages = ecs.get_paginator("list_services").paginate(cluster=cluster)
    return [a for p in pages for a in p["serviceArns"]]


def describe_one(ecs, cluster, name):
    resp = ecs.describe_services(cluster=cluster, services=[name])
    assert resp["failures"] == [], resp["failures"]
    (svc,) = resp["services"]
    return svc


def test_create_describe_list_service(ecs, cluster, td, uid):
    name = f"web-{uid}"
    svc = ecs.create_service(
        cluster=cluster,
        serviceName=name,
        taskDefinition=td["family"],
        desiredCount=0,
        tags=[{"key": "tier", "value": "front"}],
    )["service"]
    m = SVC_ARN.match(svc["serviceArn"])
    assert m and m.group("cluster") == cluster and m.group("name") == name, svc["serviceArn"]
    assert svc["serviceName"] == name
    assert svc["clusterArn"].endswith(f":cluster/{cluster}")
    assert svc["status"] == "ACTIVE"
    assert svc["desiredCount"] == 0 and svc["runningCount"] == 0 and svc["pendingCount"] == 0
    # A family name resolves to its latest ACTIVE revision's ARN.
    assert svc["taskDefinition"] == td["taskDefinitionArn"]
    (dep,) = svc["deployments"]
    assert dep["status"] == "PRIMARY"
    assert dep["taskDefinition"] == td["taskDefinitionArn"]
    assert svc["schedulingStrategy"] == "REPLICA"

    got = describe_one(ecs, cluster, name)
    assert got["serviceArn"] == svc["serviceArn"]
    assert got["status"] == "ACTIVE"
    by_arn = describe_one(ecs, cluster, svc["serviceArn"])
    assert by_arn["serviceName"] == name

    tagged = ecs.describe_services(cluster=cluster, services=[name], include=["TAGS"])["services"][0]
    assert tagged["tags"] == [{"key": "tier", "value": "front"}]

    assert list_services(ecs, cluster) == [svc["serviceArn"]]
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["activeServicesCount"] == 1


def test_describe_services_reports_missing(ecs, cluster, td, uid):
    ecs.create_service(cluster=cluster, serviceName=f"a-{uid}", taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    resp = ecs.describe_services(cluster=cluster, services=[f"a-{uid}", f"b-{uid}"])
    assert [s["serviceName"] for s in resp["services"]] == [f"a-{uid}"]
    (f,) = resp["failures"]
    assert f["reason"] == "MISSING"
    assert f["arn"].endswith(f"b-{uid}")


def test_create_service_twice_is_an_error(ecs, cluster, td, uid):
    name = f"dup-{uid}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=1)
    assert_error(e, "InvalidParameterException")
    assert describe_one(ecs, cluster, name)["desiredCount"] == 0


def test_update_service(ecs, cluster, td, uid):
    name = f"upd-{uid}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=0)

    scaled = ecs.update_service(cluster=cluster, service=name, desiredCount=2)["service"]
    assert scaled["desiredCount"] == 2
    assert describe_one(ecs, cluster, name)["desiredCount"] == 2

    td2 = register_td(ecs, td["family"])
    assert td2["revision"] == 2
    moved = ecs.update_service(cluster=cluster, service=name, taskDefinition=f"{td['family']}:2")["service"]
    assert moved["taskDefinition"] == td2["taskDefinitionArn"]
    primary = [d for d in moved["deployments"] if d["status"] == "PRIMARY"]
    assert len(primary) == 1 and primary[0]["taskDefinition"] == td2["taskDefinitionArn"]
    assert describe_one(ecs, cluster, name)["taskDefinition"] == td2["taskDefinitionArn"]


def test_delete_service_needs_force_when_scaled_up(ecs, cluster, td, uid):
    name = f"force-{uid}"
    arn = ecs.create_service(
        cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=2
    )["service"]["serviceArn"]

    # A cluster with services in it cannot be deleted.
    with pytest.raises(ecs.exceptions.ClusterContainsServicesException) as e:
        ecs.delete_cluster(cluster=cluster)
    assert_error(e, "ClusterContainsServicesException")

    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.delete_service(cluster=cluster, service=name)
    assert_error(e, "InvalidParameterException")
    assert describe_one(ecs, cluster, name)["status"] == "ACTIVE"

    deleted = ecs.delete_service(cluster=cluster, service=name, force=True)["service"]
    assert deleted["serviceArn"] == arn
    assert deleted["status"] in ("DRAINING", "INACTIVE")
    assert deleted["desiredCount"] == 0

    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=[name], WaiterConfig=FAST)
    assert describe_one(ecs, cluster, name)["status"] == "INACTIVE"
    assert list_services(ecs, cluster) == []

    # An INACTIVE service cannot be updated.
    with pytest.raises(ecs.exceptions.ServiceNotActiveException) as e:
        ecs.update_service(cluster=cluster, service=name, desiredCount=1)
    assert_error(e, "ServiceNotActiveException")

    # With its only service gone, the cluster can be deleted.
    assert ecs.delete_cluster(cluster=cluster)["cluster"]["status"] == "INACTIVE"


def test_service_name_can_be_reused_after_it_is_inactive(ecs, cluster, td, uid):
    name = f"again-{uid}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    ecs.delete_service(cluster=cluster, service=name)
    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=[name], WaiterConfig=FAST)
    again = ecs.create_service(
        cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=0
    )["service"]
    assert again["status"] == "ACTIVE"
    assert describe_one(ecs, cluster, name)["status"] == "ACTIVE"


def test_deleted_service_goes_inactive_within_seconds(ecs, cluster, td, uid):
    name = f"drain-{uid}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    t0 = time.monotonic()
    ecs.delete_service(cluster=cluster, service=name)
    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=[name], WaiterConfig=FAST)
    assert time.monotonic() - t0 < 5


def test_services_stable_waiter_for_desired_count_zero(ecs, cluster, td, uid):
    name = f"stable-{uid}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    ecs.get_waiter("services_stable").wait(cluster=cluster, services=[name], WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    svc = describe_one(ecs, cluster, name)
    assert len(svc["deployments"]) == 1 and svc["deployments"][0]["status"] == "PRIMARY"
    assert svc["runningCount"] == svc["desiredCount"] == 0


def test_services_stable_waiter_after_a_new_revision(ecs, cluster, td, uid):
    # With desiredCount 0 a rollout has nothing to start or stop, so the new deployment completes
    # and the old one goes away: ServicesStable (one deployment, running == desired) must succeed.
    name = f"roll-{uid}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    td2 = register_td(ecs, td["family"])
    ecs.update_service(cluster=cluster, service=name, taskDefinition=td2["taskDefinitionArn"])
    ecs.get_waiter("services_stable").wait(
        cluster=cluster, services=[name], WaiterConfig={"Delay": 1, "MaxAttempts": 10}
    )
    svc = describe_one(ecs, cluster, name)
    (dep,) = svc["deployments"]
    assert dep["status"] == "PRIMARY" and dep["taskDefinition"] == td2["taskDefinitionArn"]


def test_service_errors(ecs, cluster, td, uid):
    with pytest.raises(ecs.exceptions.ServiceNotFoundException) as e:
        ecs.update_service(cluster=cluster, service=f"ghost-{uid}", desiredCount=1)
    assert_error(e, "ServiceNotFoundException")

    with pytest.raises(ecs.exceptions.ServiceNotFoundException) as e:
        ecs.delete_service(cluster=cluster, service=f"ghost-{uid}")
    assert_error(e, "ServiceNotFoundException")

    # ECS answers ClientException "TaskDefinition not found." here.
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.create_service(cluster=cluster, serviceName=f"x-{uid}", taskDefinition=f"no-such-{uid}:1", desiredCount=0)
    assert_error(e, "ClientException")

    with pytest.raises(ecs.exceptions.ClusterNotFoundException) as e:
        ecs.create_service(
            cluster=f"nope-{uid}", serviceName=f"x-{uid}", taskDefinition=td["taskDefinitionArn"], desiredCount=0
        )
    assert_error(e, "ClusterNotFoundException")

    with pytest.raises(ecs.exceptions.ClusterNotFoundException) as e:
        ecs.describe_services(cluster=f"nope-{uid}", services=["x"])
    assert_error(e, "ClusterNotFoundException")

    # A deregistered (INACTIVE) task definition cannot be used for a new service.
    ecs.deregister_task_definition(taskDefinition=td["taskDefinitionArn"])
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.create_service(cluster=cluster, serviceName=f"y-{uid}", taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    assert_error(e, "ClientException")
