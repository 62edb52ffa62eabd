"""Tags through boto3: TagResource, UntagResource and ListTagsForResource on each taggable
resource kind."""

import pytest

from support import assert_error, register_instance, register_td


def tags_of(ecs, arn):
    return sorted((t["key"], t["value"]) for t in ecs.list_tags_for_resource(resourceArn=arn)["tags"])


def exercise(ecs, arn, initial=()):
    assert tags_of(ecs, arn) == sorted(initial)
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "dev"}, {"key": "team", "value": "core"}])
    assert tags_of(ecs, arn) == sorted([*initial, ("env", "dev"), ("team", "core")])
    # Tagging an existing key replaces its value.
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "prod"}])
    assert tags_of(ecs, arn) == sorted([*initial, ("env", "prod"), ("team", "core")])
    ecs.untag_resource(resourceArn=arn, tagKeys=["team", "not-there"])
    assert tags_of(ecs, arn) == sorted([*initial, ("env", "prod")])
    ecs.untag_resource(resourceArn=arn, tagKeys=["env", *[k for k, _ in initial]])
    assert tags_of(ecs, arn) == []


def test_cluster_tags(ecs, uid):
    arn = ecs.create_cluster(clusterName=f"tags-{uid}", tags=[{"key": "born", "value": "yes"}])["cluster"]["clusterArn"]
    exercise(ecs, arn, initial=[("born", "yes")])


def test_task_definition_tags(ecs, uid):
    arn = register_td(ecs, f"tags-{uid}")["taskDefinitionArn"]
    exercise(ecs, arn)


def test_service_tags(ecs, cluster, uid):
    td = register_td(ecs, f"tags-{uid}")
    arn = ecs.create_service(
        cluster=cluster, serviceName=f"tags-{uid}", taskDefinition=td["taskDefinitionArn"], desiredCount=0
    )["service"]["serviceArn"]
    exercise(ecs, arn)
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "visible", "value": "1"}])
    described = ecs.describe_services(cluster=cluster, services=[arn], include=["TAGS"])["services"][0]
    assert described["tags"] == [{"key": "visible", "value": "1"}]


def test_container_instance_tags(ecs, cluster):
    arn = register_instance(ecs, cluster)["containerInstanceArn"]
    exercise(ecs, arn)


def test_cluster_tags_show_in_describe(ecs, uid):
    name = f"tagdesc-{uid}"
    arn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "1"}])
    (c,) = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"]
    assert c["tags"] == [{"key": "a", "value": "1"}]


def test_tagging_a_missing_resource(ecs, cluster, uid):
    account = ecs.describe_clusters(clusters=[cluster])["clusters"][0]["clusterArn"].split(":")[4]
    arn = f"arn:aws:ecs:us-east-1:{account}:service/{cluster}/ghost-{uid}"
    with pytest.raises(ecs.exceptions.ResourceNotFoundException) as e:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "b"}])
    assert_error(e, "ResourceNotFoundException")
    with pytest.raises(ecs.exceptions.ResourceNotFoundException) as e:
        ecs.untag_resource(resourceArn=arn, tagKeys=["a"])
    assert_error(e, "ResourceNotFoundException")


def test_reserved_tag_prefix_is_rejected(ecs, uid):
    arn = ecs.create_cluster(clusterName=f"tagaws-{uid}")["cluster"]["clusterArn"]
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "aws:owner", "value": "me"}])
    assert_error(e, "InvalidParameterException")
    assert tags_of(ecs, arn) == []
