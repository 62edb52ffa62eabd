"""Task definitions through boto3: RegisterTaskDefinition (revisions), DescribeTaskDefinition by
family, family:revision and ARN, ListTaskDefinitions (familyPrefix, status, sort),
ListTaskDefinitionFamilies, DeregisterTaskDefinition and DeleteTaskDefinitions."""

import re

import pytest

from support import assert_error, container, register_td

TD_ARN = re.compile(r"^arn:aws:ecs:us-east-1:\d{12}:task-definition/(?P<family>[A-Za-z0-9_-]+):(?P<rev>\d+)$")


def arn_of(td):
    return td["taskDefinitionArn"]


def family_rev(arn):
    m = TD_ARN.match(arn)
    assert m, arn
    return m.group("family"), int(m.group("rev"))


def all_td_arns(ecs, **params):
    pages = ecs.get_paginator("list_task_definitions").paginate(**params)
    return [a for p in pages for a in p["taskDefinitionArns"]]


def all_families(ecs, **params):
    pages = ecs.get_paginator("list_task_definition_families").paginate(**params)
    return [f for p in pages for f in p["families"]]


def register_rev(ecs, family, n, **extra):
    return ecs.register_task_definition(
        family=family,
        containerDefinitions=[container(environment=[{"name": "REV", "value": str(n)}], memory=64 * n)],
        **extra,
    )


def test_register_revisions_and_describe_them(ecs, uid):
    family = f"web-{uid}"
    tds = [register_rev(ecs, family, n)["taskDefinition"] for n in (1, 2, 3)]
    assert [td["revision"] for td in tds] == [1, 2, 3]
    for n, td in enumerate(tds, start=1):
        assert family_rev(arn_of(td)) == (family, n)
        assert td["family"] == family
        assert td["status"] == "ACTIVE"
        (c,) = td["containerDefinitions"]
        assert c["name"] == "app" and c["image"].endswith("nginx:latest")
        assert c["memory"] == 64 * n
        assert {"name": "REV", "value": str(n)} in c["environment"]

    latest = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    assert latest["revision"] == 3 and arn_of(latest) == arn_of(tds[2])

    second = ecs.describe_task_definition(taskDefinition=f"{family}:2")["taskDefinition"]
    assert second["revision"] == 2
    assert second["containerDefinitions"][0]["memory"] == 128

    by_arn = ecs.describe_task_definition(taskDefinition=arn_of(tds[0]))["taskDefinition"]
    assert by_arn["revision"] == 1
    assert {"name": "REV", "value": "1"} in by_arn["containerDefinitions"][0]["environment"]


def test_register_and_describe_tags(ecs, uid):
    family = f"tagged-{uid}"
    resp = ecs.register_task_definition(
        family=family, containerDefinitions=[container()], tags=[{"key": "owner", "value": "me"}]
    )
    assert resp["tags"] == [{"key": "owner", "value": "me"}]
    with_tags = ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
    assert with_tags["tags"] == [{"key": "owner", "value": "me"}]
    without = ecs.describe_task_definition(taskDefinition=family)
    assert not without.get("tags")


def test_register_echoes_task_level_settings(ecs, uid):
    family = f"vpc-{uid}"
    td = ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "web",
                "image": "nginx",
                "portMappings": [{"containerPort": 80}],
                "essential": True,
            }
        ],
    )["taskDefinition"]
    assert td["networkMode"] == "awsvpc"
    assert td["cpu"] == "256" and td["memory"] == "512"
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert "FARGATE" in td["compatibilities"]
    (pm,) = td["containerDefinitions"][0]["portMappings"]
    # awsvpc: the host port is the container port, protocol defaults to tcp.
    assert pm["containerPort"] == 80 and pm["hostPort"] == 80 and pm["protocol"] == "tcp"


@pytest.mark.parametrize(
    "containers, why",
    [
        ([{"name": "app", "memory": 128}], "no image"),
        ([{"name": "app", "image": "nginx"}], "no memory or memoryReservation and no task memory"),
        ([], "no containers"),
    ],
)
def test_register_rejects_bad_task_definitions(ecs, uid, containers, why):
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family=f"bad-{uid}", containerDefinitions=containers)
    assert_error(e, "ClientException")
    # Nothing was registered.
    assert f"bad-{uid}" not in all_families(ecs, familyPrefix=f"bad-{uid}", status="ALL")


def test_describe_missing_task_definition(ecs, uid):
    for ref in (f"nothing-{uid}", f"nothing-{uid}:1", f"arn:aws:ecs:us-east-1:000000000000:task-definition/nothing-{uid}:7"):
        with pytest.raises(ecs.exceptions.ClientException) as e:
            ecs.describe_task_definition(taskDefinition=ref)
        assert_error(e, "ClientException")


def test_deregister_and_delete(ecs, uid):
    family = f"life-{uid}"
    arns = [arn_of(register_rev(ecs, family, n)["taskDefinition"]) for n in (1, 2, 3)]

    dereg = ecs.deregister_task_definition(taskDefinition=f"{family}:3")["taskDefinition"]
    assert dereg["status"] == "INACTIVE"
    assert dereg["revision"] == 3
    assert dereg.get("deregisteredAt")

    # The family name alone now means the latest ACTIVE revision.
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 2
    # An INACTIVE revision can still be described by revision.
    assert ecs.describe_task_definition(taskDefinition=arns[2])["taskDefinition"]["status"] == "INACTIVE"

    assert all_td_arns(ecs, familyPrefix=family) == arns[:2]
    assert all_td_arns(ecs, familyPrefix=family, status="INACTIVE") == [arns[2]]

    # Only INACTIVE revisions can be deleted; ACTIVE ones come back as failures.
    resp = ecs.delete_task_definitions(taskDefinitions=[f"{family}:3", f"{family}:1"])
    assert [td["taskDefinitionArn"] for td in resp["taskDefinitions"]] == [arns[2]]
    assert resp["taskDefinitions"][0]["status"] == "DELETE_IN_PROGRESS"
    (f,) = resp["failures"]
    assert f["arn"] == arns[0]
    assert f.get("reason")

    assert all_td_arns(ecs, familyPrefix=family, status="DELETE_IN_PROGRESS") == [arns[2]]
    assert all_td_arns(ecs, familyPrefix=family, status="INACTIVE") == []

    # Revision numbers are never reused, even after a deletion.
    assert register_rev(ecs, family, 4)["taskDefinition"]["revision"] == 4


def test_deregister_missing_revision(ecs, uid):
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.deregister_task_definition(taskDefinition=f"ghost-{uid}:1")
    assert_error(e, "ClientException")


def test_list_task_definitions_family_prefix_is_the_whole_family(ecs, uid):
    a, b = f"pre-{uid}", f"pre-{uid}-more"
    register_td(ecs, a)
    register_td(ecs, b)
    assert [family_rev(x)[0] for x in all_td_arns(ecs, familyPrefix=a)] == [a]
    assert [family_rev(x)[0] for x in all_td_arns(ecs, familyPrefix=b)] == [b]


def test_list_task_definitions_sort(ecs, uid):
    # Family `f` and family `f-b`: lexicographically `f` < `f-b`. Eleven revisions of `f` so that
    # revision 10 must sort after revision 9 numerically, not as text.
    f, g = f"sort{uid}", f"sort{uid}-b"
    f_arns = [arn_of(register_td(ecs, f)) for _ in range(11)]
    g_arns = [arn_of(register_td(ecs, g))]
    assert [family_rev(a)[1] for a in f_arns] == list(range(1, 12))

    assert all_td_arns(ecs, familyPrefix=f) == f_arns
    assert all_td_arns(ecs, familyPrefix=f, sort="ASC") == f_arns
    assert all_td_arns(ecs, familyPrefix=f, sort="DESC") == f_arns[::-1]

    # Across families: ASC is by family name, then by revision number; DESC reverses both.
    ours = set(f_arns + g_arns)
    asc = [a for a in all_td_arns(ecs) if a in ours]
    assert asc == f_arns + g_arns, "ASC must list family f before family f-b (lexicographic family order)"
    desc = [a for a in all_td_arns(ecs, sort="DESC") if a in ours]
    assert desc == g_arns + f_arns[::-1]


def test_list_task_definition_families(ecs, uid):
    prefix = f"fam{uid}"
    a, b, c = f"{prefix}a", f"{prefix}b", f"{prefix}c"
    register_td(ecs, a)
    register_td(ecs, b)
    register_td(ecs, b)
    gone = register_td(ecs, c)
    ecs.deregister_task_definition(taskDefinition=arn_of(gone))
    # An unrelated family that the prefix must not match.
    register_td(ecs, f"x{prefix}")

    assert all_families(ecs, familyPrefix=prefix, status="ACTIVE") == [a, b]
    assert all_families(ecs, familyPrefix=prefix, status="INACTIVE") == [c]
    assert all_families(ecs, familyPrefix=prefix, status="ALL") == [a, b, c]
    assert all_families(ecs, familyPrefix=f"{prefix}b") == [b]


def test_list_task_definition_families_default_lists_active_and_inactive(ecs, uid):
    # Documented: "By default, both ACTIVE and INACTIVE task definition families are listed."
    prefix = f"dflt{uid}"
    register_td(ecs, f"{prefix}-live")
    dead = register_td(ecs, f"{prefix}-dead")
    ecs.deregister_task_definition(taskDefinition=arn_of(dead))
    assert all_families(ecs, familyPrefix=prefix) == [f"{prefix}-dead", f"{prefix}-live"]
