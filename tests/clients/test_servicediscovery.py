"""AWS Cloud Map (servicediscovery) end to end through boto3 and the aws CLI: namespaces and
their operations, services, instances, DiscoverInstances with its filters, custom health, tags,
and every bad input answered with Cloud Map's error code.

DiscoverInstances carries the `data-` host prefix in the service model: SDKs would call
`data-127.0.0.1`, so boto3 runs with `Config(inject_host_prefix=False)` and the CLI with
`AWS_DISABLE_HOST_PREFIX_INJECTION=true`."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from support import AwsCli


def client(env, inject_host_prefix=True):
    return boto3.session.Session().client(
        "servicediscovery",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, inject_host_prefix=inject_host_prefix),
    )


@pytest.fixture(scope="module")
def sd(server_env):
    return client(server_env)


@pytest.fixture(scope="module")
def data(server_env):
    """The client for DiscoverInstances: no `data-` host prefix."""
    return client(server_env, inject_host_prefix=False)


@pytest.fixture(scope="module")
def cli(server_env, workdir):
    return AwsCli({**server_env, "AWS_DISABLE_HOST_PREFIX_INJECTION": "true"}, workdir / "cli-sd")


def code_of(excinfo) -> str:
    err = excinfo.value.response
    assert err["Error"].get("Message"), err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400, err
    return err["Error"]["Code"]


def ok(res):
    assert res.ok, f"`aws {' '.join(res.args)}` failed ({res.returncode}): {res.stderr}"
    return res.data


def namespace_of(sd, operation_id: str) -> str:
    op = sd.get_operation(OperationId=operation_id)["Operation"]
    assert op["Status"] == "SUCCESS", op
    return op["Targets"]["NAMESPACE"]


@pytest.fixture
def private_ns(sd, uid):
    name = f"p{uid}.local"
    op = sd.create_private_dns_namespace(Name=name, Vpc="vpc-1", CreatorRequestId=f"r-{uid}")
    return name, namespace_of(sd, op["OperationId"])


@pytest.fixture
def http_ns(sd, uid):
    name = f"h{uid}"
    return name, namespace_of(sd, sd.create_http_namespace(Name=name)["OperationId"])


def test_namespaces_operations_and_idempotency(sd, uid):
    name = f"n{uid}.local"
    op = sd.create_private_dns_namespace(
        Name=name, Vpc="vpc-1", CreatorRequestId=f"c-{uid}", Description="d1",
        Properties={"DnsProperties": {"SOA": {"TTL": 30}}}, Tags=[{"Key": "team", "Value": "a"}],
    )
    again = sd.create_private_dns_namespace(Name=name, Vpc="vpc-1", CreatorRequestId=f"c-{uid}")
    assert again["OperationId"] == op["OperationId"]
    ns_id = namespace_of(sd, op["OperationId"])
    ns = sd.get_namespace(Id=ns_id)["Namespace"]
    assert (ns["Name"], ns["Type"], ns["Description"]) == (name, "DNS_PRIVATE", "d1")
    assert ns["Properties"]["DnsProperties"]["SOA"]["TTL"] == 30
    assert ns["CreateDate"].year >= 2024 and ns["Arn"].endswith(f":namespace/{ns_id}")
    with pytest.raises(ClientError) as e:
        sd.create_private_dns_namespace(Name=name, Vpc="vpc-1", CreatorRequestId=f"other-{uid}")
    assert code_of(e) == "NamespaceAlreadyExists"
    assert e.value.response["NamespaceId"] == ns_id

    upd = sd.update_private_dns_namespace(
        Id=ns_id, Namespace={"Description": "d2", "Properties": {"DnsProperties": {"SOA": {"TTL": 99}}}}
    )
    assert sd.get_operation(OperationId=upd["OperationId"])["Operation"]["Type"] == "UPDATE_NAMESPACE"
    ns = sd.get_namespace(Id=ns_id)["Namespace"]
    assert (ns["Description"], ns["Properties"]["DnsProperties"]["SOA"]["TTL"]) == ("d2", 99)

    found = sd.list_namespaces(Filters=[{"Name": "NAME", "Values": [f"n{uid}"], "Condition": "BEGINS_WITH"}])
    assert [n["Id"] for n in found["Namespaces"]] == [ns_id]
    typed = sd.list_namespaces(Filters=[{"Name": "TYPE", "Values": ["DNS_PRIVATE"]}])["Namespaces"]
    assert ns_id in [n["Id"] for n in typed] and all(n["Type"] == "DNS_PRIVATE" for n in typed)
    ops = sd.list_operations(Filters=[{"Name": "NAMESPACE_ID", "Values": [ns_id]}])["Operations"]
    assert {o["Id"] for o in ops} == {op["OperationId"], upd["OperationId"]}

    tags = sd.list_tags_for_resource(ResourceARN=ns["Arn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "a"}]
    sd.tag_resource(ResourceARN=ns["Arn"], Tags=[{"Key": "env", "Value": "dev"}])
    sd.untag_resource(ResourceARN=ns["Arn"], TagKeys=["team"])
    assert sd.list_tags_for_resource(ResourceARN=ns["Arn"])["Tags"] == [{"Key": "env", "Value": "dev"}]

    dele = sd.delete_namespace(Id=ns_id)
    assert sd.get_operation(OperationId=dele["OperationId"])["Operation"]["Type"] == "DELETE_NAMESPACE"
    with pytest.raises(ClientError) as e:
        sd.get_namespace(Id=ns_id)
    assert code_of(e) == "NamespaceNotFound"


def test_list_namespaces_pages(sd, uid):
    ids = {namespace_of(sd, sd.create_http_namespace(Name=f"pg{uid}-{i}")["OperationId"]) for i in range(3)}
    seen, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        page = sd.list_namespaces(MaxResults=2, Filters=[{"Name": "NAME", "Values": [f"pg{uid}"], "Condition": "BEGINS_WITH"}], **kw)
        assert len(page["Namespaces"]) <= 2
        seen += [n["Id"] for n in page["Namespaces"]]
        token = page.get("NextToken")
        if not token:
            break
    assert set(seen) == ids and len(seen) == 3


def test_services_and_instances_with_discovery(sd, data, private_ns):
    ns_name, ns_id = private_ns
    svc = sd.create_service(
        Name="web", NamespaceId=ns_id, HealthCheckCustomConfig={"FailureThreshold": 1},
        DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}]},
    )["Service"]
    assert svc["DnsConfig"]["DnsRecords"][0] == {"Type": "A", "TTL": 10}
    for n, (stage, health) in enumerate([("prod", "HEALTHY"), ("prod", "UNHEALTHY"), ("dev", "HEALTHY")], 1):
        op = sd.register_instance(
            ServiceId=svc["Id"], InstanceId=f"t{n}",
            Attributes={"AWS_INSTANCE_IPV4": f"10.0.0.{n}", "AWS_INSTANCE_PORT": "80", "stage": stage, "AWS_INIT_HEALTH_STATUS": health},
        )
        assert sd.get_operation(OperationId=op["OperationId"])["Operation"]["Type"] == "REGISTER_INSTANCE"
    assert sd.get_service(Id=svc["Id"])["Service"]["InstanceCount"] == 3
    assert sd.get_instance(ServiceId=svc["Id"], InstanceId="t2")["Instance"]["Attributes"]["stage"] == "prod"
    assert {i["Id"] for i in sd.list_instances(ServiceId=svc["Id"])["Instances"]} == {"t1", "t2", "t3"}
    health = sd.get_instances_health_status(ServiceId=svc["Id"])["Status"]
    assert health == {"t1": "HEALTHY", "t2": "UNHEALTHY", "t3": "HEALTHY"}

    def ids(**kw):
        found = data.discover_instances(NamespaceName=ns_name, ServiceName="web", **kw)["Instances"]
        return sorted(i["InstanceId"] for i in found)

    assert ids() == ["t1", "t3"]
    assert ids(HealthStatus="ALL") == ["t1", "t2", "t3"]
    assert ids(HealthStatus="UNHEALTHY") == ["t2"]
    assert ids(HealthStatus="ALL", QueryParameters={"stage": "prod"}) == ["t1", "t2"]
    assert ids(HealthStatus="ALL", QueryParameters={"stage": "prod"}, OptionalParameters={"AWS_INSTANCE_IPV4": "10.0.0.2"}) == ["t2"]
    assert ids(HealthStatus="ALL", QueryParameters={"stage": "prod"}, OptionalParameters={"AWS_INSTANCE_IPV4": "9.9.9.9"}) == ["t1", "t2"]
    assert len(data.discover_instances(NamespaceName=ns_name, ServiceName="web", HealthStatus="ALL", MaxResults=1)["Instances"]) == 1

    sd.update_instance_custom_health_status(ServiceId=svc["Id"], InstanceId="t1", Status="UNHEALTHY")
    sd.update_instance_custom_health_status(ServiceId=svc["Id"], InstanceId="t3", Status="UNHEALTHY")
    assert ids() == []
    assert ids(HealthStatus="HEALTHY_OR_ELSE_ALL") == ["t1", "t2", "t3"]

    rev = data.discover_instances_revision(NamespaceName=ns_name, ServiceName="web")["InstancesRevision"]
    sd.deregister_instance(ServiceId=svc["Id"], InstanceId="t3")
    assert data.discover_instances_revision(NamespaceName=ns_name, ServiceName="web")["InstancesRevision"] > rev

    upd = sd.update_service(Id=svc["Id"], Service={"Description": "x", "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 60}, {"Type": "SRV", "TTL": 30}]}})
    assert sd.get_operation(OperationId=upd["OperationId"])["Operation"]["Type"] == "UPDATE_SERVICE"
    assert sd.get_service(Id=svc["Id"])["Service"]["DnsConfig"]["DnsRecords"][0]["TTL"] == 60
    assert [s["Id"] for s in sd.list_services(Filters=[{"Name": "NAMESPACE_ID", "Values": [ns_id]}])["Services"]] == [svc["Id"]]

    with pytest.raises(ClientError) as e:
        sd.delete_service(Id=svc["Id"])
    assert code_of(e) == "ResourceInUse"
    with pytest.raises(ClientError) as e:
        sd.delete_namespace(Id=ns_id)
    assert code_of(e) == "ResourceInUse"
    for t in ("t1", "t2"):
        sd.deregister_instance(ServiceId=svc["Id"], InstanceId=t)
    sd.delete_service(Id=svc["Id"])
    sd.delete_namespace(Id=ns_id)


def test_the_cli_with_host_prefix_injection_disabled(cli, http_ns):
    ns_name, ns_id = http_ns
    svc = ok(cli("servicediscovery", "create-service", "--name", "api", "--namespace-id", ns_id))["Service"]
    assert svc["Type"] == "HTTP"
    ok(cli("servicediscovery", "register-instance", "--service-id", svc["Id"], "--instance-id", "i1",
           "--attributes", "color=blue,AWS_INSTANCE_IPV4=10.0.0.9"))
    found = ok(cli("servicediscovery", "discover-instances", "--namespace-name", ns_name, "--service-name", "api"))
    assert [(i["InstanceId"], i["Attributes"]["color"]) for i in found["Instances"]] == [("i1", "blue")]
    missing = cli("servicediscovery", "get-service", "--id", "srv-doesnotexist00")
    assert not missing.ok and "ServiceNotFound" in missing.stderr


BAD = [
    ("create_private_dns_namespace", {"Name": "no-vpc.local", "Vpc": ""}, "InvalidInput"),
    ("create_private_dns_namespace", {"Name": "bad name.local", "Vpc": "vpc-1"}, "InvalidInput"),
    ("create_public_dns_namespace", {"Name": "example.com"}, "InvalidInput"),
    ("get_namespace", {"Id": "ns-doesnotexist0000"}, "NamespaceNotFound"),
    ("delete_namespace", {"Id": "ns-doesnotexist0000"}, "NamespaceNotFound"),
    ("get_service", {"Id": "srv-doesnotexist000"}, "ServiceNotFound"),
    ("get_operation", {"OperationId": "nope"}, "OperationNotFound"),
    ("list_namespaces", {"Filters": [{"Name": "TYPE", "Values": ["HTTP"], "Condition": "BEGINS_WITH"}]}, "InvalidInput"),
    ("list_namespaces", {"NextToken": "garbage"}, "InvalidInput"),
    ("create_service", {"Name": "x", "NamespaceId": "ns-doesnotexist0000"}, "NamespaceNotFound"),
    ("tag_resource", {"ResourceARN": "arn:aws:servicediscovery:us-east-1:000000000000:namespace/ns-nope", "Tags": [{"Key": "a", "Value": "b"}]}, "ResourceNotFoundException"),
    ("register_instance", {"ServiceId": "srv-doesnotexist000", "InstanceId": "i", "Attributes": {}}, "ServiceNotFound"),
]


@pytest.mark.parametrize("op,kw,code", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_gets_the_modeled_error(sd, op, kw, code):
    with pytest.raises(ClientError) as e:
        getattr(sd, op)(**kw)
    assert code_of(e) == code


def test_bad_services_and_instances(sd, data, private_ns, http_ns):
    _, ns_id = private_ns
    _, http_id = http_ns

    def fails(call, code, **kw):
        with pytest.raises(ClientError) as e:
            call(**kw)
        assert code_of(e) == code, e.value.response
        return e.value.response

    dns = lambda *types, policy="MULTIVALUE": {"RoutingPolicy": policy, "DnsRecords": [{"Type": t, "TTL": 10} for t in types]}
    fails(sd.create_service, "InvalidInput", Name="c", NamespaceId=ns_id, DnsConfig=dns("CNAME", "A", policy="WEIGHTED"))
    fails(sd.create_service, "InvalidInput", Name="c", NamespaceId=ns_id, DnsConfig=dns("CNAME"))
    fails(sd.create_service, "InvalidInput", Name="c", NamespaceId=ns_id)
    fails(sd.create_service, "InvalidInput", Name="c", NamespaceId=ns_id, DnsConfig=dns("A"), HealthCheckConfig={"Type": "HTTP"})
    fails(sd.create_service, "InvalidInput", Name="c", NamespaceId=http_id, DnsConfig=dns("A"))
    svc = sd.create_service(Name="plain", NamespaceId=ns_id, DnsConfig=dns("A", "SRV"))["Service"]
    dup = fails(sd.create_service, "ServiceAlreadyExists", Name="plain", NamespaceId=ns_id, DnsConfig=dns("A"))
    assert dup["ServiceId"] == svc["Id"]
    fails(sd.register_instance, "InvalidInput", ServiceId=svc["Id"], InstanceId="i", Attributes={"AWS_INSTANCE_PORT": "80"})
    fails(sd.register_instance, "InvalidInput", ServiceId=svc["Id"], InstanceId="i", Attributes={"AWS_INSTANCE_IPV4": "10.0.0.1"})
    fails(sd.register_instance, "InvalidInput", ServiceId=svc["Id"], InstanceId="i", Attributes={"AWS_INSTANCE_IPV4": "300.1.1.1", "AWS_INSTANCE_PORT": "80"})
    fails(sd.register_instance, "InvalidInput", ServiceId=svc["Id"], InstanceId="i",
          Attributes={"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80", "AWS_INIT_HEALTH_STATUS": "HEALTHY"})
    fails(sd.register_instance, "InvalidInput", ServiceId=svc["Id"], InstanceId="i",
          Attributes={"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80", **{f"k{n}": "v" for n in range(31)}})
    sd.register_instance(ServiceId=svc["Id"], InstanceId="i", Attributes={"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "80"})
    fails(sd.update_instance_custom_health_status, "CustomHealthNotFound", ServiceId=svc["Id"], InstanceId="i", Status="HEALTHY")
    fails(sd.get_instance, "InstanceNotFound", ServiceId=svc["Id"], InstanceId="nope")
    fails(sd.deregister_instance, "InstanceNotFound", ServiceId=svc["Id"], InstanceId="nope")
    fails(sd.update_service, "InvalidInput", Id=svc["Id"], Service={"DnsConfig": {"DnsRecords": [{"Type": "AAAA", "TTL": 5}]}})
    fails(data.discover_instances, "NamespaceNotFound", NamespaceName="nope.local", ServiceName="plain")
    fails(data.discover_instances, "ServiceNotFound", NamespaceName=private_ns[0], ServiceName="nope")
    fails(sd.tag_resource, "TooManyTagsException", ResourceARN=svc["Arn"], Tags=[{"Key": f"k{n}", "Value": "v"} for n in range(51)])
    sd.deregister_instance(ServiceId=svc["Id"], InstanceId="i")
    sd.delete_service(Id=svc["Id"])
