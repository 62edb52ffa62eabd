"""EC2 subnets end to end, through boto3 and the aws CLI: CreateSubnet in the default VPC (zone by
name or id, tags), DescribeSubnets with the filters EC2 users use, the `subnet_available` waiter,
the modeled errors for overlapping and out-of-range blocks, DeleteSubnet, and created subnets
outliving a restart.

These tests run a server of their own: the subnets they create would otherwise show in other
modules' unfiltered DescribeSubnets (the Auto Scaling tests take every subnet listed for their
groups, and groups accept only the default VPC's)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from support import AwsCli, ServerProcess, assert_error, make_client


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("subnets")
    srv = ServerProcess(d / "data", d / "server.stderr.log").start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        rc = srv.stop()
        assert rc == 0, f"flotilla server exited with status {rc} after SIGTERM\nstderr:\n{srv.stderr_tail()}"


@pytest.fixture(scope="module")
def ec2(own_server):
    return make_client(own_server.env, service="ec2")


@pytest.fixture(scope="module")
def vpc(ec2):
    (v,) = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    return v


@pytest.fixture(scope="module")
def default_ids(ec2, vpc):
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    assert len(subnets) == 3 and all(s["VpcId"] == vpc["VpcId"] for s in subnets)
    return [s["SubnetId"] for s in subnets]


def ids(subnets) -> list[str]:
    return [s["SubnetId"] for s in subnets]


def test_create_describe_filter_and_delete(ec2, vpc, default_ids):
    region = ec2.meta.region_name
    created = ec2.create_subnet(
        VpcId=vpc["VpcId"],
        CidrBlock="172.31.48.0/24",
        AvailabilityZone=f"{region}b",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": "tasks-b"}]}],
    )["Subnet"]
    sid = created["SubnetId"]
    assert sid.startswith("subnet-") and sid not in default_ids
    assert created["State"] == "available"
    assert created["VpcId"] == vpc["VpcId"]
    assert created["CidrBlock"] == "172.31.48.0/24"
    assert created["AvailableIpAddressCount"] == 251
    assert created["AvailabilityZone"] == f"{region}b"
    assert created["AvailabilityZoneId"].endswith("-az2")
    assert created["DefaultForAz"] is False and created["MapPublicIpOnLaunch"] is False
    assert created["SubnetArn"].endswith(f":subnet/{sid}") and created["SubnetArn"].startswith(f"arn:aws:ec2:{region}:")
    assert created["Tags"] == [{"Key": "Name", "Value": "tasks-b"}]
    assert created["Ipv6CidrBlockAssociationSet"] == [] and created["AssignIpv6AddressOnCreation"] is False

    # By zone id; the waiter sees it available.
    zone_id = created["AvailabilityZoneId"]
    other = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.64.0/28", AvailabilityZoneId=zone_id)["Subnet"]
    assert other["AvailabilityZone"] == f"{region}b" and other["AvailableIpAddressCount"] == 11
    waiter = ec2.get_waiter("subnet_available")
    waiter.wait(SubnetIds=[sid, other["SubnetId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 5})

    everything = ids(ec2.describe_subnets()["Subnets"])
    assert everything[:3] == default_ids and set(everything[3:]) == {sid, other["SubnetId"]}

    def f(name, *values):
        return ids(ec2.describe_subnets(Filters=[{"Name": name, "Values": list(values)}])["Subnets"])

    assert f("tag:Name", "tasks-*") == [sid]
    assert f("tag-key", "Name") == [sid]
    assert f("cidr-block", "172.31.64.0/28") == [other["SubnetId"]]
    assert f("cidr-block-association.cidr-block", "172.31.48.0/24") == [sid]
    assert sorted(f("default-for-az", "false")) == sorted([sid, other["SubnetId"]])
    assert f("availability-zone", f"{region}b") == [default_ids[1], *sorted([sid, other["SubnetId"]])]
    assert f("vpc-id", vpc["VpcId"]) == everything
    assert f("state", "pending") == []
    assert ids(ec2.describe_subnets(SubnetIds=[sid])["Subnets"]) == [sid]

    # The paginator walks defaults and created ones alike.
    pages = [p["Subnets"] for p in ec2.get_paginator("describe_subnets").paginate(PaginationConfig={"PageSize": 5})]
    assert [len(p) for p in pages] == [5] and ids(pages[0]) == everything

    assert ec2.delete_subnet(SubnetId=other["SubnetId"])["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as e:
        ec2.describe_subnets(SubnetIds=[other["SubnetId"]])
    assert_error(e, "InvalidSubnetID.NotFound")
    with pytest.raises(ClientError) as e:
        ec2.delete_subnet(SubnetId=other["SubnetId"])
    assert_error(e, "InvalidSubnetID.NotFound")
    with pytest.raises(ClientError) as e:
        ec2.delete_subnet(SubnetId=default_ids[0])
    assert_error(e, "OperationNotPermitted")
    assert default_ids[0] in ids(ec2.describe_subnets()["Subnets"])


@pytest.mark.parametrize(
    "cidr,code",
    [
        ("172.31.0.0/24", "InvalidSubnet.Conflict"),  # inside the default subnet of zone a
        ("172.31.32.0/19", "InvalidSubnet.Conflict"),  # holds the default subnet of zone c
        ("10.0.0.0/24", "InvalidSubnet.Range"),  # outside the VPC
        ("172.31.200.0/29", "InvalidSubnet.Range"),  # smaller than /28
        ("172.31.200.1/24", "InvalidParameterValue"),  # not a block
    ],
)
def test_bad_blocks_get_ec2s_codes(ec2, vpc, cidr, code):
    with pytest.raises(ClientError) as e:
        ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=cidr)
    resp = assert_error(e, code)
    if code != "InvalidParameterValue":
        assert cidr in resp["Error"]["Message"]


def test_overlap_with_a_created_subnet_and_bad_vpc_or_zone(ec2, vpc):
    made = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.80.0/20")["Subnet"]
    try:
        with pytest.raises(ClientError) as e:
            ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.90.0/24")
        resp = assert_error(e, "InvalidSubnet.Conflict")
        assert resp["Error"]["Message"] == "The CIDR '172.31.90.0/24' conflicts with another subnet"
    finally:
        ec2.delete_subnet(SubnetId=made["SubnetId"])
    with pytest.raises(ClientError) as e:
        ec2.create_subnet(VpcId="vpc-0123456789abcdef0", CidrBlock="172.31.90.0/24")
    resp = assert_error(e, "InvalidVpcID.NotFound")
    assert "vpc-0123456789abcdef0" in resp["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.90.0/24", AvailabilityZone="mars-1a")
    resp = assert_error(e, "InvalidParameterValue")
    assert "mars-1a" in resp["Error"]["Message"]
    # Its block is free again now.
    again = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.90.0/24")["Subnet"]
    ec2.delete_subnet(SubnetId=again["SubnetId"])


def test_the_aws_cli_creates_and_describes(own_server, vpc, tmp_path):
    aws = AwsCli(own_server.env, tmp_path / "cli")
    res = aws(
        "ec2", "create-subnet", "--vpc-id", vpc["VpcId"], "--cidr-block", "172.31.112.0/24",
        "--tag-specifications", "ResourceType=subnet,Tags=[{Key=via,Value=cli}]",
    )
    assert res.ok, res.stderr
    sid = res.data["Subnet"]["SubnetId"]
    assert res.data["Subnet"]["CidrBlock"] == "172.31.112.0/24"
    res = aws("ec2", "describe-subnets", "--filters", "Name=tag:via,Values=cli")
    assert res.ok, res.stderr
    assert [s["SubnetId"] for s in res.data["Subnets"]] == [sid]
    res = aws("ec2", "create-subnet", "--vpc-id", vpc["VpcId"], "--cidr-block", "172.31.112.128/25")
    assert not res.ok and "InvalidSubnet.Conflict" in res.error, res.error


def test_created_subnets_outlive_a_restart(own_server, ec2, vpc):
    zone = f"{ec2.meta.region_name}c"
    made = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.128.0/20", AvailabilityZone=zone)["Subnet"]
    assert own_server.stop() == 0
    own_server.start()
    again = make_client(own_server.env, service="ec2")
    (found,) = again.describe_subnets(SubnetIds=[made["SubnetId"]])["Subnets"]
    assert (found["CidrBlock"], found["AvailabilityZone"]) == (made["CidrBlock"], made["AvailabilityZone"])
    with pytest.raises(ClientError) as e:
        again.create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.130.0/24")
    assert_error(e, "InvalidSubnet.Conflict")
