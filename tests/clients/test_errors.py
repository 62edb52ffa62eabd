"""Error responses as botocore sees them: each ECS error code must map to the modeled exception
class (client.exceptions.X), carry a message and a request id; authentication failures surface as
ClientError with AWS's codes."""

import pytest
from botocore.exceptions import ClientError

from support import assert_error, make_client, register_instance, register_td


def test_cluster_not_found(ecs, uid):
    missing = f"nope-{uid}"
    calls = [
        lambda: ecs.delete_cluster(cluster=missing),
        lambda: ecs.list_services(cluster=missing),
        lambda: ecs.list_container_instances(cluster=missing),
        lambda: ecs.list_tasks(cluster=missing),
        lambda: ecs.describe_services(cluster=missing, services=["x"]),
        lambda: ecs.list_attributes(cluster=missing, targetType="container-instance"),
    ]
    for call in calls:
        with pytest.raises(ecs.exceptions.ClusterNotFoundException) as e:
            call()
        assert_error(e, "ClusterNotFoundException")


def test_client_exception_for_a_bad_task_definition(ecs, uid):
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family=f"bad-{uid}", containerDefinitions=[{"name": "x", "memory": 64}])
    assert_error(e, "ClientException")
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.describe_task_definition(taskDefinition=f"bad-{uid}")
    assert_error(e, "ClientException")


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda ecs: ecs.list_clusters(maxResults=0), id="list_clusters-maxResults-0"),
        pytest.param(lambda ecs: ecs.list_clusters(maxResults=101), id="list_clusters-maxResults-101"),
        pytest.param(lambda ecs: ecs.list_task_definitions(maxResults=0), id="list_task_definitions-maxResults-0"),
        pytest.param(lambda ecs: ecs.list_clusters(nextToken="not-a-real-token"), id="list_clusters-bad-token"),
        pytest.param(
            lambda ecs: ecs.list_task_definitions(nextToken="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            id="list_task_definitions-bad-token",
        ),
        pytest.param(
            lambda ecs: ecs.list_task_definition_families(nextToken="%%%garbage%%%"), id="families-bad-token"
        ),
        pytest.param(lambda ecs: ecs.list_services(maxResults=0), id="list_services-maxResults-0"),
    ],
)
def test_invalid_parameter(ecs, call):
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        call(ecs)
    assert_error(e, "InvalidParameterException")


def test_client_exception_for_a_service_with_an_unknown_task_definition(ecs, cluster, uid):
    # ECS answers ClientException "TaskDefinition not found." for this one.
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.create_service(cluster=cluster, serviceName=f"s-{uid}", taskDefinition=f"unknown-{uid}", desiredCount=0)
    assert_error(e, "ClientException")
    assert "TaskDefinition not found" in e.value.response["Error"]["Message"]


def test_service_not_found_and_not_active(ecs, cluster, uid):
    with pytest.raises(ecs.exceptions.ServiceNotFoundException) as e:
        ecs.update_service(cluster=cluster, service=f"ghost-{uid}", desiredCount=1)
    assert_error(e, "ServiceNotFoundException")

    td = register_td(ecs, f"err-{uid}")
    name = f"gone-{uid}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    ecs.delete_service(cluster=cluster, service=name)
    # Right after deletion the service is DRAINING, later INACTIVE: neither can be updated.
    with pytest.raises(ecs.exceptions.ServiceNotActiveException) as e:
        ecs.update_service(cluster=cluster, service=name, desiredCount=1)
    assert_error(e, "ServiceNotActiveException")
    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=[name], WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    with pytest.raises(ecs.exceptions.ServiceNotActiveException) as e:
        ecs.update_service(cluster=cluster, service=name, desiredCount=1)
    assert_error(e, "ServiceNotActiveException")
    # Deleting it again is refused the same way.
    with pytest.raises(ecs.exceptions.ServiceNotActiveException) as e:
        ecs.delete_service(cluster=cluster, service=name)
    assert_error(e, "ServiceNotActiveException")


def test_cluster_contains_services(ecs, cluster, uid):
    td = register_td(ecs, f"err-{uid}")
    ecs.create_service(cluster=cluster, serviceName=f"s-{uid}", taskDefinition=td["taskDefinitionArn"], desiredCount=0)
    with pytest.raises(ecs.exceptions.ClusterContainsServicesException) as e:
        ecs.delete_cluster(cluster=cluster)
    assert_error(e, "ClusterContainsServicesException")


def test_cluster_contains_container_instances(ecs, cluster):
    register_instance(ecs, cluster)
    with pytest.raises(ecs.exceptions.ClusterContainsContainerInstancesException) as e:
        ecs.delete_cluster(cluster=cluster)
    assert_error(e, "ClusterContainsContainerInstancesException")


def test_target_not_found(ecs, cluster):
    with pytest.raises(ecs.exceptions.TargetNotFoundException) as e:
        ecs.put_attributes(
            cluster=cluster, attributes=[{"name": "a", "value": "b", "targetId": "00000000000000000000000000000000"}]
        )
    assert_error(e, "TargetNotFoundException")


def test_unsupported_feature(ecs, uid):
    td = register_td(ecs, f"run-{uid}")
    # The EXTERNAL launch type (ECS Anywhere) is not built: a modeled error, not a fake success.
    with pytest.raises(ecs.exceptions.UnsupportedFeatureException) as e:
        ecs.run_task(taskDefinition=td["taskDefinitionArn"], launchType="EXTERNAL")
    assert_error(e, "UnsupportedFeatureException")


def test_resource_not_found(ecs, cluster, uid):
    arn = ecs.describe_clusters(clusters=[cluster])["clusters"][0]["clusterArn"].replace(
        ":cluster/", ":service/"
    ) + f"/ghost-{uid}"
    with pytest.raises(ecs.exceptions.ResourceNotFoundException) as e:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}])
    assert_error(e, "ResourceNotFoundException")


def test_successful_responses_carry_a_request_id(ecs):
    a = ecs.list_clusters()["ResponseMetadata"]
    b = ecs.list_clusters()["ResponseMetadata"]
    assert a["HTTPStatusCode"] == 200
    assert a["RequestId"] and b["RequestId"] and a["RequestId"] != b["RequestId"]


# ----------------------------------------------------------------------------------------------
# authentication


def auth_error(client) -> dict:
    with pytest.raises(ClientError) as e:
        client.list_clusters()
    resp = e.value.response
    assert resp["Error"].get("Message"), resp
    assert resp["ResponseMetadata"].get("RequestId"), resp
    assert 400 <= resp["ResponseMetadata"]["HTTPStatusCode"] < 500, resp
    return resp


def test_wrong_secret_is_an_invalid_signature(server_env):
    bad = make_client(server_env, secret_key="x" * 40)
    assert auth_error(bad)["Error"]["Code"] == "InvalidSignatureException"


def test_unknown_access_key_is_unrecognized(server_env):
    stranger = make_client(server_env, access_key="AKIAUNKNOWNUNKNOWN00", secret_key="y" * 40)
    assert auth_error(stranger)["Error"]["Code"] == "UnrecognizedClientException"


def test_the_right_key_pair_still_works(server_env):
    assert "clusterArns" in make_client(server_env).list_clusters()
