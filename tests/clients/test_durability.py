"""Durability through the client: everything a client was told succeeded is still there after the
server is killed with SIGKILL (no shutdown path at all) and restarted on the same data directory."""

import pytest

from support import ServerProcess, make_client, register_instance, register_td


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own, so killing it does not disturb the shared one."""
    servers = []

    def start():
        srv = ServerProcess(tmp_path / "data", tmp_path / f"stderr-{len(servers)}.log").start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        if srv.proc and srv.proc.poll() is None:
            srv.kill()


def test_state_survives_sigkill_and_restart(own_server):
    srv = own_server()
    ecs = make_client(srv.env)

    # Clusters, with tags and settings.
    ecs.create_cluster(
        clusterName="durable",
        tags=[{"key": "keep", "value": "me"}],
        settings=[{"name": "containerInsights", "value": "enabled"}],
    )
    ecs.create_cluster(clusterName="doomed")
    ecs.delete_cluster(cluster="doomed")
    # Task definitions: three revisions, one deregistered.
    tds = [register_td(ecs, "durable-td", tags=[{"key": "rev", "value": str(i)}]) for i in (1, 2, 3)]
    ecs.deregister_task_definition(taskDefinition=tds[2]["taskDefinitionArn"])
    # A container instance with attributes, one of them put afterwards, drained.
    ci = register_instance(ecs, "durable", attributes=[{"name": "stack", "value": "prod"}])
    ci_arn = ci["containerInstanceArn"]
    ecs.put_attributes(cluster="durable", attributes=[{"name": "zone", "value": "z1", "targetId": ci_arn}])
    ecs.update_container_instances_state(cluster="durable", containerInstances=[ci_arn], status="DRAINING")
    # A service, updated, and tagged afterwards.
    svc = ecs.create_service(
        cluster="durable", serviceName="api", taskDefinition=tds[0]["taskDefinitionArn"], desiredCount=0
    )["service"]
    ecs.update_service(cluster="durable", service="api", taskDefinition=tds[1]["taskDefinitionArn"], desiredCount=3)
    ecs.tag_resource(resourceArn=svc["serviceArn"], tags=[{"key": "owner", "value": "ops"}])

    assert srv.kill() == -9
    before = srv.env

    srv = own_server()
    # The same data directory keeps the same key pair.
    assert srv.env["AWS_ACCESS_KEY_ID"] == before["AWS_ACCESS_KEY_ID"]
    assert srv.env["AWS_SECRET_ACCESS_KEY"] == before["AWS_SECRET_ACCESS_KEY"]
    ecs = make_client(srv.env)

    clusters = [a.rsplit("/", 1)[1] for a in ecs.list_clusters()["clusterArns"]]
    assert "durable" in clusters and "doomed" not in clusters
    (c,) = ecs.describe_clusters(clusters=["durable"], include=["TAGS", "SETTINGS"])["clusters"]
    assert c["status"] == "ACTIVE"
    assert c["tags"] == [{"key": "keep", "value": "me"}]
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]
    assert c["registeredContainerInstancesCount"] == 1
    assert c["activeServicesCount"] == 1

    arns = [t["taskDefinitionArn"] for t in tds]
    assert ecs.list_task_definitions(familyPrefix="durable-td")["taskDefinitionArns"] == arns[:2]
    assert ecs.list_task_definitions(familyPrefix="durable-td", status="INACTIVE")["taskDefinitionArns"] == arns[2:]
    got = ecs.describe_task_definition(taskDefinition="durable-td:2", include=["TAGS"])
    assert got["taskDefinition"]["containerDefinitions"][0]["image"].endswith("nginx:latest")
    assert got["tags"] == [{"key": "rev", "value": "2"}]

    (inst,) = ecs.describe_container_instances(cluster="durable", containerInstances=[ci_arn])["containerInstances"]
    assert inst["status"] == "DRAINING"
    attrs = {a["name"]: a.get("value") for a in inst["attributes"]}
    assert attrs.get("stack") == "prod" and attrs.get("zone") == "z1"
    assert {r["name"]: r.get("integerValue") for r in inst["registeredResources"]}["CPU"] == 2048

    (s,) = ecs.describe_services(cluster="durable", services=["api"], include=["TAGS"])["services"]
    assert s["status"] == "ACTIVE"
    assert s["desiredCount"] == 3
    assert s["taskDefinition"] == arns[1]
    assert s["tags"] == [{"key": "owner", "value": "ops"}]

    # Writing goes on where it left off: revision numbers continue.
    assert register_td(ecs, "durable-td")["revision"] == 4

    # A second crash right after more writes.
    ecs.create_cluster(clusterName="after-restart")
    ecs.delete_service(cluster="durable", service="api", force=True)
    assert srv.kill() == -9

    srv = own_server()
    ecs = make_client(srv.env)
    names = [a.rsplit("/", 1)[1] for a in ecs.list_clusters()["clusterArns"]]
    assert {"durable", "after-restart"} <= set(names)
    assert [a.rsplit(":", 1)[1] for a in ecs.list_task_definitions(familyPrefix="durable-td")["taskDefinitionArns"]] == ["1", "2", "4"]
    (s,) = ecs.describe_services(cluster="durable", services=["api"])["services"]
    assert s["status"] in ("DRAINING", "INACTIVE")
    assert s["desiredCount"] == 0

    # And a clean stop exits 0.
    assert srv.stop() == 0
