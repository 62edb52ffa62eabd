"""Pagination through botocore's own paginators: small PageSize, every item exactly once, pages of
the requested size, and MaxItems/StartingToken resumption."""

import pytest

from support import assert_error, assert_pages, paginate, register_instance, register_td


def test_list_clusters_pages(ecs, uid):
    mine = {ecs.create_cluster(clusterName=f"pg-{uid}-{i}")["cluster"]["clusterArn"] for i in range(5)}
    everything = paginate(ecs, "list_clusters", "clusterArns", 100)
    assert len(everything) == 1 or all(len(p) == 100 for p in everything[:-1])
    all_arns = [a for p in everything for a in p]
    assert mine <= set(all_arns)
    for size in (1, 2, 3):
        pages = paginate(ecs, "list_clusters", "clusterArns", size)
        assert_pages(pages, size, all_arns)


def test_list_task_definitions_pages(ecs, uid):
    family = f"pgtd-{uid}"
    arns = [register_td(ecs, family)["taskDefinitionArn"] for _ in range(7)]
    for size in (1, 3, 7, 10):
        pages = paginate(ecs, "list_task_definitions", "taskDefinitionArns", size, familyPrefix=family)
        assert_pages(pages, size, arns, ordered=True)
    pages = paginate(ecs, "list_task_definitions", "taskDefinitionArns", 3, familyPrefix=family, sort="DESC")
    assert_pages(pages, 3, arns[::-1], ordered=True)


def test_list_task_definitions_max_items_and_starting_token(ecs, uid):
    family = f"pgmax-{uid}"
    arns = [register_td(ecs, family)["taskDefinitionArn"] for _ in range(7)]
    paginator = ecs.get_paginator("list_task_definitions")
    first = paginator.paginate(familyPrefix=family, PaginationConfig={"MaxItems": 4, "PageSize": 3}).build_full_result()
    assert first["taskDefinitionArns"] == arns[:4]
    assert first.get("NextToken"), first
    rest = paginator.paginate(
        familyPrefix=family, PaginationConfig={"MaxItems": 10, "PageSize": 3, "StartingToken": first["NextToken"]}
    ).build_full_result()
    assert rest["taskDefinitionArns"] == arns[4:]
    assert not rest.get("NextToken")


def test_list_task_definition_families_pages(ecs, uid):
    prefix = f"pgfam{uid}"
    families = [f"{prefix}-{i:02d}" for i in range(5)]
    for f in families:
        register_td(ecs, f)
    for size in (1, 2, 5):
        pages = paginate(ecs, "list_task_definition_families", "families", size, familyPrefix=prefix)
        assert_pages(pages, size, families, ordered=True)


def test_list_container_instances_pages(ecs, cluster):
    arns = [register_instance(ecs, cluster)["containerInstanceArn"] for _ in range(5)]
    for size in (1, 2, 4):
        pages = paginate(ecs, "list_container_instances", "containerInstanceArns", size, cluster=cluster)
        assert_pages(pages, size, arns)


def test_list_services_pages(ecs, cluster, uid):
    td = register_td(ecs, f"pgsvc-{uid}")
    arns = [
        ecs.create_service(
            cluster=cluster, serviceName=f"s{i:02d}", taskDefinition=td["taskDefinitionArn"], desiredCount=0
        )["service"]["serviceArn"]
        for i in range(12)
    ]
    for size in (2, 5):
        pages = paginate(ecs, "list_services", "serviceArns", size, cluster=cluster)
        assert_pages(pages, size, arns)
    # Documented default: ListServices returns up to 10 results when maxResults is not given.
    first = ecs.list_services(cluster=cluster)
    assert len(first["serviceArns"]) == 10
    assert first.get("nextToken")
    second = ecs.list_services(cluster=cluster, nextToken=first["nextToken"])
    assert len(second["serviceArns"]) == 2
    assert not second.get("nextToken")
    assert set(first["serviceArns"]) | set(second["serviceArns"]) == set(arns)


def test_list_tasks_pages_when_there_are_none(ecs, cluster):
    # Tasks only come from RunTask/StartTask and the scheduler; on an empty cluster the paginator
    # must still finish with one empty page.
    pages = paginate(ecs, "list_tasks", "taskArns", 2, cluster=cluster)
    assert_pages(pages, 2, [])
    pages = paginate(ecs, "list_tasks", "taskArns", 2, cluster=cluster, desiredStatus="STOPPED")
    assert_pages(pages, 2, [])


def test_list_attributes_pages(ecs, cluster):
    expected = []
    for i in range(3):
        arn = register_instance(ecs, cluster)["containerInstanceArn"]
        attrs = [{"name": f"k{j}", "value": f"v{i}-{j}", "targetId": arn} for j in range(3)]
        ecs.put_attributes(cluster=cluster, attributes=attrs)
        expected += [(arn, f"k{j}", f"v{i}-{j}") for j in range(3)]
    paginator = ecs.get_paginator("list_attributes")
    for size in (2, 4):
        pages = [
            [(a["targetId"], a["name"], a.get("value")) for a in page["attributes"]]
            for page in paginator.paginate(
                cluster=cluster, targetType="container-instance", PaginationConfig={"PageSize": size}
            )
        ]
        assert_pages(pages, size, expected)


def test_tokens_only_work_for_their_own_listing(ecs, uid):
    family = f"pgtok-{uid}"
    for _ in range(3):
        register_td(ecs, family)
    token = ecs.list_task_definitions(familyPrefix=family, maxResults=1)["nextToken"]
    # The same token with the same filters works ...
    assert len(ecs.list_task_definitions(familyPrefix=family, maxResults=1, nextToken=token)["taskDefinitionArns"]) == 1
    # ... but not for a different listing.
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.list_clusters(nextToken=token)
    assert_error(e, "InvalidParameterException")
