"""The EC2 and Auto Scaling query APIs end to end, through boto3 and the aws CLI: launch
templates, the default VPC, and Auto Scaling groups over them (with a MixedInstancesPolicy), each
bad input answered with the modeled error code. No provisioner runs here, so groups launch no
hosts: the tests assert the records the APIs keep and the errors they give."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from support import wait_until, make_client

USER_DATA = base64.b64encode(b"#!/bin/bash\necho ECS_CLUSTER=default >> /etc/ecs/ecs.config\n").decode()


@pytest.fixture(scope="module")
def ec2(server_env):
    return make_client(server_env, service="ec2")


@pytest.fixture(scope="module")
def autoscaling(server_env):
    return make_client(server_env, service="autoscaling")


@pytest.fixture(scope="module")
def subnets(ec2):
    return [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]]


def ok(res):
    assert res.ok, f"`aws {' '.join(res.args)}` failed ({res.returncode}): {res.stderr}"
    return res.data


def code_of(excinfo) -> str:
    err = excinfo.value.response
    assert err["Error"].get("Message"), err
    assert 400 <= err["ResponseMetadata"]["HTTPStatusCode"] < 500, err
    return err["Error"]["Code"]


def make_template(ec2, name: str, instance_type: str = "t3.micro") -> dict:
    return ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={"InstanceType": instance_type, "UserData": USER_DATA},
    )["LaunchTemplate"]


# ---------------------------------------------------------------------------------------------
# EC2


def test_default_vpc_is_described(ec2):
    (vpc,) = ec2.describe_vpcs()["Vpcs"]
    assert vpc["IsDefault"] and vpc["CidrBlock"] == "172.31.0.0/16"
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert all(s["DefaultForAz"] and s["VpcId"] == vpc["VpcId"] for s in subnets)
    in_b = ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": ["us-east-1b"]}])["Subnets"]
    assert [s["AvailabilityZone"] for s in in_b] == ["us-east-1b"]
    one = ec2.describe_subnets(SubnetIds=[subnets[0]["SubnetId"]])["Subnets"]
    assert [s["SubnetId"] for s in one] == [subnets[0]["SubnetId"]]
    (sg,) = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    assert sg["VpcId"] == vpc["VpcId"] and sg["GroupName"] == "default"
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert {z["State"] for z in zones} == {"available"}


def test_unknown_network_ids_are_not_found(ec2):
    with pytest.raises(ClientError) as e:
        ec2.describe_subnets(SubnetIds=["subnet-00000000000000000"])
    assert code_of(e) == "InvalidSubnetID.NotFound"
    with pytest.raises(ClientError) as e:
        ec2.describe_vpcs(VpcIds=["vpc-00000000000000000"])
    assert code_of(e) == "InvalidVpcID.NotFound"
    with pytest.raises(ClientError) as e:
        ec2.describe_subnets(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert code_of(e) == "InvalidParameterValue"


def test_launch_template_life_cycle(ec2, uid):
    name = f"lt-{uid}"
    created = ec2.create_launch_template(
        LaunchTemplateName=name,
        VersionDescription="first",
        LaunchTemplateData={
            "InstanceType": "t3.micro",
            "UserData": USER_DATA,
            "KeyName": "mine",
            "SecurityGroupIds": ["sg-1", "sg-2"],
        },
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "team", "Value": uid}]}],
    )["LaunchTemplate"]
    lt_id = created["LaunchTemplateId"]
    assert lt_id.startswith("lt-") and len(lt_id) == 20
    assert (created["DefaultVersionNumber"], created["LatestVersionNumber"]) == (1, 1)
    assert created["Tags"] == [{"Key": "team", "Value": uid}]

    v2 = ec2.create_launch_template_version(
        LaunchTemplateId=lt_id, SourceVersion="1", LaunchTemplateData={"InstanceType": "m5.large"}
    )["LaunchTemplateVersion"]
    assert v2["VersionNumber"] == 2 and not v2["DefaultVersion"]
    # The source version's data carries over; the new fields replace it.
    assert v2["LaunchTemplateData"]["InstanceType"] == "m5.large"
    assert v2["LaunchTemplateData"]["UserData"] == USER_DATA
    assert v2["LaunchTemplateData"]["KeyName"] == "mine"
    assert v2["LaunchTemplateData"]["SecurityGroupIds"] == ["sg-1", "sg-2"]

    modified = ec2.modify_launch_template(LaunchTemplateName=name, DefaultVersion="2")["LaunchTemplate"]
    assert (modified["DefaultVersionNumber"], modified["LatestVersionNumber"]) == (2, 2)

    by_name = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
    assert [t["LaunchTemplateId"] for t in by_name] == [lt_id]
    by_tag = ec2.describe_launch_templates(Filters=[{"Name": "tag:team", "Values": [uid]}])["LaunchTemplates"]
    assert [t["LaunchTemplateName"] for t in by_tag] == [name]

    versions = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id)["LaunchTemplateVersions"]
    assert sorted(v["VersionNumber"] for v in versions) == [1, 2]
    (default,) = ec2.describe_launch_template_versions(LaunchTemplateName=name, Versions=["$Default"])[
        "LaunchTemplateVersions"
    ]
    assert default["VersionNumber"] == 2 and default["DefaultVersion"]
    (first,) = ec2.describe_launch_template_versions(LaunchTemplateName=name, Versions=["1"])["LaunchTemplateVersions"]
    assert first["VersionDescription"] == "first"

    deleted = ec2.delete_launch_template(LaunchTemplateId=lt_id)["LaunchTemplate"]
    assert deleted["LaunchTemplateName"] == name
    with pytest.raises(ClientError) as e:
        ec2.describe_launch_templates(LaunchTemplateIds=[lt_id])
    assert code_of(e) == "InvalidLaunchTemplateId.NotFound"
    # The name is free again.
    make_template(ec2, name)


def test_launch_template_errors(ec2, uid):
    name = f"bad-{uid}"
    make_template(ec2, name)
    cases = [
        (lambda: make_template(ec2, name), "InvalidLaunchTemplateName.AlreadyExistsException"),
        (lambda: make_template(ec2, "no spaces allowed"), "InvalidLaunchTemplateName.MalformedException"),
        (lambda: make_template(ec2, "ab"), "InvalidLaunchTemplateName.MalformedException"),
        (
            lambda: ec2.create_launch_template(LaunchTemplateName=f"ud-{uid}", LaunchTemplateData={"UserData": "%%%"}),
            "InvalidUserData.Malformed",
        ),
        (
            lambda: ec2.describe_launch_templates(LaunchTemplateIds=["lt-0123456789abcdef0"]),
            "InvalidLaunchTemplateId.NotFound",
        ),
        (lambda: ec2.describe_launch_templates(LaunchTemplateIds=["lt-nope"]), "InvalidLaunchTemplateId.Malformed"),
        (
            lambda: ec2.describe_launch_templates(LaunchTemplateNames=[f"missing-{uid}"]),
            "InvalidLaunchTemplateName.NotFoundException",
        ),
        (
            lambda: ec2.create_launch_template_version(
                LaunchTemplateName=f"missing-{uid}", LaunchTemplateData={"InstanceType": "t3.micro"}
            ),
            "InvalidLaunchTemplateName.NotFoundException",
        ),
        (
            lambda: ec2.create_launch_template_version(
                LaunchTemplateName=name, SourceVersion="9", LaunchTemplateData={"InstanceType": "t3.micro"}
            ),
            "InvalidLaunchTemplateId.VersionNotFound",
        ),
        (lambda: ec2.modify_launch_template(LaunchTemplateName=name, DefaultVersion="5"), "InvalidLaunchTemplateId.VersionNotFound"),
        (lambda: ec2.delete_launch_template(), "MissingParameter"),
        (lambda: ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"]), "InvalidInstanceID.NotFound"),
        (lambda: ec2.describe_instances(MaxResults=5, NextToken="bogus"), "InvalidPaginationToken"),
    ]
    for call, code in cases:
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == code


def test_describe_instances_filters_without_hosts(ec2):
    got = ec2.describe_instances(
        Filters=[
            {"Name": "instance-state-name", "Values": ["running"]},
            {"Name": "tag:aws:autoscaling:groupName", "Values": ["none"]},
            {"Name": "instance-lifecycle", "Values": ["spot"]},
        ]
    )
    assert got["Reservations"] == []


def test_unknown_actions_are_invalid(server_env):
    """SDKs only send actions they know; a raw signed request for another gets InvalidAction."""
    creds = Credentials(server_env["AWS_ACCESS_KEY_ID"], server_env["AWS_SECRET_ACCESS_KEY"])
    url = server_env["AWS_ENDPOINT_URL"] + "/"
    for service, version in [("ec2", "2016-11-15"), ("autoscaling", "2011-01-01")]:
        body = f"Action=LaunchRockets&Version={version}"
        req = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        SigV4Auth(creds, service, server_env["AWS_DEFAULT_REGION"]).add_auth(req)
        r = urllib.request.Request(url, data=body.encode(), headers=dict(req.headers), method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(r, timeout=10)
        assert e.value.code == 400
        assert "<Code>InvalidAction</Code>" in e.value.read().decode()


# ---------------------------------------------------------------------------------------------
# Auto Scaling


def test_mixed_instances_group_through_the_cli(aws, ec2, autoscaling, subnets, uid, tmp_path):
    template = f"asg-lt-{uid}"
    created = ok(
        aws(
            "ec2",
            "create-launch-template",
            "--launch-template-name",
            template,
            "--launch-template-data",
            json.dumps({"InstanceType": "t3.micro", "UserData": USER_DATA}),
        )
    )
    assert created["LaunchTemplate"]["LaunchTemplateName"] == template
    group = f"asg-{uid}"
    spec = {
        "AutoScalingGroupName": group,
        "MinSize": 0,
        "MaxSize": 4,
        "DesiredCapacity": 1,
        "VPCZoneIdentifier": ",".join(subnets[:2]),
        "NewInstancesProtectedFromScaleIn": True,
        "MixedInstancesPolicy": {
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": template, "Version": "$Latest"},
                "Overrides": [{"InstanceType": "m5.large"}, {"InstanceType": "c5.large"}],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 1,
                "OnDemandPercentageAboveBaseCapacity": 0,
                "SpotAllocationStrategy": "price-capacity-optimized",
            },
        },
        "Tags": [
            {"Key": "AmazonECSManaged", "Value": "", "PropagateAtLaunch": True},
            {"Key": "team", "Value": uid, "PropagateAtLaunch": False},
        ],
    }
    path = tmp_path / "asg.json"
    path.write_text(json.dumps(spec))
    res = aws("autoscaling", "create-auto-scaling-group", "--cli-input-json", f"file://{path}")
    assert res.ok, res.stderr

    (g,) = ok(aws("autoscaling", "describe-auto-scaling-groups", "--auto-scaling-group-names", group))[
        "AutoScalingGroups"
    ]
    assert g["AutoScalingGroupARN"].startswith("arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:")
    assert g["AutoScalingGroupARN"].endswith(f":autoScalingGroupName/{group}")
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (0, 4, 1)
    assert g["VPCZoneIdentifier"] == ",".join(subnets[:2])
    assert g["AvailabilityZones"] == ["us-east-1a", "us-east-1b"]
    assert g["NewInstancesProtectedFromScaleIn"] is True
    assert g["Instances"] == [] and "Status" not in g
    m = g["MixedInstancesPolicy"]
    assert m["LaunchTemplate"]["LaunchTemplateSpecification"]["LaunchTemplateName"] == template
    assert m["LaunchTemplate"]["LaunchTemplateSpecification"]["Version"] == "$Latest"
    assert [o["InstanceType"] for o in m["LaunchTemplate"]["Overrides"]] == ["m5.large", "c5.large"]
    d = m["InstancesDistribution"]
    assert (d["OnDemandBaseCapacity"], d["OnDemandPercentageAboveBaseCapacity"]) == (1, 0)
    assert d["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert {t["Key"]: t["PropagateAtLaunch"] for t in g["Tags"]} == {"AmazonECSManaged": True, "team": False}

    ok(aws("autoscaling", "set-desired-capacity", "--auto-scaling-group-name", group, "--desired-capacity", "3"))
    ok(aws("autoscaling", "update-auto-scaling-group", "--auto-scaling-group-name", group, "--max-size", "2"))
    (g,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    # Lowering the max below the desired capacity brings the desired capacity down with it.
    assert (g["MaxSize"], g["DesiredCapacity"]) == (2, 2)

    by_tag = autoscaling.describe_auto_scaling_groups(Filters=[{"Name": "tag:team", "Values": [uid]}])
    assert [x["AutoScalingGroupName"] for x in by_tag["AutoScalingGroups"]] == [group]
    tags = autoscaling.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": [group]}])["Tags"]
    assert sorted(t["Key"] for t in tags) == ["AmazonECSManaged", "team"]
    assert autoscaling.describe_policies(AutoScalingGroupName=group)["ScalingPolicies"] == []
    # This server has no provisioner: every launch fails as a scaling activity that names the flag.
    activities = wait_until(
        lambda: autoscaling.describe_scaling_activities(AutoScalingGroupName=group)["Activities"],
        timeout=20, what="a scaling activity",
    )
    assert all(a["StatusCode"] == "Failed" and "--provisioner" in a["StatusMessage"] for a in activities), activities

    # No host was launched, so the group goes without hosts to terminate.
    ok(aws("autoscaling", "delete-auto-scaling-group", "--force-delete", "--auto-scaling-group-name", group))
    wait_until(
        lambda: autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"] == [],
        timeout=20, what="the group deleted",
    )


def test_plain_template_group_with_zones_and_tags(ec2, autoscaling, uid):
    template = make_template(ec2, f"plain-lt-{uid}")
    group = f"plain-{uid}"
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"]},
        MinSize=1,
        MaxSize=3,
        AvailabilityZones=["us-east-1c"],
    )
    (g,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    # Desired capacity defaults to the minimum.
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (1, 3, 1)
    assert g["LaunchTemplate"] == {
        "LaunchTemplateId": template["LaunchTemplateId"],
        "LaunchTemplateName": template["LaunchTemplateName"],
        "Version": "$Default",
    }
    assert g["AvailabilityZones"] == ["us-east-1c"]

    tag = {"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": "env", "Value": "prod", "PropagateAtLaunch": True}
    autoscaling.create_or_update_tags(Tags=[tag])
    autoscaling.create_or_update_tags(Tags=[{**tag, "Value": "staging"}])
    (t,) = autoscaling.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": [group]}])["Tags"]
    assert (t["Key"], t["Value"], t["PropagateAtLaunch"]) == ("env", "staging", True)
    autoscaling.delete_tags(Tags=[{"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": "env"}])
    assert autoscaling.describe_tags(Filters=[{"Name": "auto-scaling-group", "Values": [group]}])["Tags"] == []

    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group, ForceDelete=True)
    assert autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"] == []


def test_describe_groups_pages(ec2, autoscaling, uid):
    template = make_template(ec2, f"page-lt-{uid}")
    names = [f"page-{uid}-{i}" for i in range(3)]
    for n in names:
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=n,
            LaunchTemplate={"LaunchTemplateName": template["LaunchTemplateName"]},
            MinSize=0,
            MaxSize=1,
            AvailabilityZones=["us-east-1a"],
            Tags=[{"Key": "page", "Value": uid}],
        )
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
        Filters=[{"Name": "tag:page", "Values": [uid]}], PaginationConfig={"PageSize": 2}
    )
    seen = [[g["AutoScalingGroupName"] for g in p["AutoScalingGroups"]] for p in pages]
    assert seen == [names[:2], names[2:]]
    for n in names:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=n)


def test_auto_scaling_errors(ec2, autoscaling, subnets, uid):
    template = make_template(ec2, f"err-lt-{uid}")
    odd = make_template(ec2, f"odd-lt-{uid}", instance_type="x9.gigantic")
    group = f"err-{uid}"
    lt = {"LaunchTemplateName": template["LaunchTemplateName"]}
    base = dict(AutoScalingGroupName=group, LaunchTemplate=lt, MinSize=0, MaxSize=2, VPCZoneIdentifier=subnets[0])
    autoscaling.create_auto_scaling_group(**base)

    def mixed(**distribution):
        return {
            "LaunchTemplate": {"LaunchTemplateSpecification": lt, "Overrides": [{"InstanceType": "m5.large"}]},
            "InstancesDistribution": distribution,
        }

    cases = [
        (dict(base), "AlreadyExists", "already exists"),
        ({**base, "AutoScalingGroupName": f"e1-{uid}", "MinSize": 3}, "ValidationError", "Max bound, 2, must be greater than or equal to min bound, 3"),
        ({**base, "AutoScalingGroupName": f"e2-{uid}", "DesiredCapacity": 5}, "ValidationError", "Desired capacity:5 must be between the specified min size:0 and max size:2"),
        ({**base, "AutoScalingGroupName": f"e3-{uid}", "VPCZoneIdentifier": "subnet-nope"}, "ValidationError", "The subnet ID 'subnet-nope' does not exist"),
        ({**base, "AutoScalingGroupName": f"e4-{uid}", "LaunchTemplate": {"LaunchTemplateName": f"missing-{uid}"}}, "ValidationError", "does not exist"),
        ({**base, "AutoScalingGroupName": f"e5-{uid}", "LaunchTemplate": {"LaunchTemplateName": odd["LaunchTemplateName"]}}, "ValidationError", "'x9.gigantic'"),
        ({**base, "AutoScalingGroupName": f"e6-{uid}", "MixedInstancesPolicy": mixed()}, "ValidationError", "either LaunchTemplate"),
        ({k: v for k, v in {**base, "AutoScalingGroupName": f"e7-{uid}"}.items() if k != "VPCZoneIdentifier"}, "ValidationError", "Availability Zone or VPC Subnet"),
        ({k: v for k, v in {**base, "AutoScalingGroupName": f"e8-{uid}", "MixedInstancesPolicy": mixed(OnDemandPercentageAboveBaseCapacity=150)}.items() if k != "LaunchTemplate"}, "ValidationError", "OnDemandPercentageAboveBaseCapacity"),
        ({**base, "AutoScalingGroupName": f"e9-{uid}", "LaunchTemplate": {**lt, "Version": "7"}}, "ValidationError", "version 7"),
        ({**base, "AutoScalingGroupName": f"e10-{uid}", "TargetGroupARNs": ["arn:aws:elasticloadbalancing:tg"]}, "ValidationError", "TargetGroupARNs is not supported"),
    ]
    for params, code, words in cases:
        with pytest.raises(ClientError) as e:
            autoscaling.create_auto_scaling_group(**params)
        assert code_of(e) == code, params
        assert words in e.value.response["Error"]["Message"], e.value.response

    with pytest.raises(ClientError) as e:
        autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=3)
    assert code_of(e) == "ValidationError"
    assert "above max value 2" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=group, MinSize=3)
    assert code_of(e) == "ValidationError"
    with pytest.raises(ClientError) as e:
        autoscaling.set_desired_capacity(AutoScalingGroupName=f"missing-{uid}", DesiredCapacity=1)
    assert code_of(e) == "ValidationError"
    assert "not found" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        autoscaling.terminate_instance_in_auto_scaling_group(InstanceId="i-0123456789abcdef0", ShouldDecrementDesiredCapacity=True)
    assert code_of(e) == "ValidationError"
    with pytest.raises(ClientError) as e:
        autoscaling.set_instance_protection(AutoScalingGroupName=group, InstanceIds=["i-0123456789abcdef0"], ProtectedFromScaleIn=True)
    assert code_of(e) == "ValidationError"
    with pytest.raises(ClientError) as e:
        autoscaling.create_or_update_tags(Tags=[{"ResourceId": f"missing-{uid}", "ResourceType": "auto-scaling-group", "Key": "k", "Value": "v"}])
    assert code_of(e) == "ValidationError"
    with pytest.raises(ClientError) as e:
        autoscaling.describe_auto_scaling_groups(NextToken="bogus")
    assert code_of(e) == "InvalidNextToken"
    with pytest.raises(ClientError) as e:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=f"missing-{uid}")
    assert code_of(e) == "ValidationError"
    # Activities are history, not a lookup: an unknown group simply has none.
    assert autoscaling.describe_scaling_activities(AutoScalingGroupName=f"missing-{uid}")["Activities"] == []
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group)


def test_cli_reports_modeled_errors(aws, uid):
    res = aws("autoscaling", "set-desired-capacity", "--auto-scaling-group-name", f"missing-{uid}", "--desired-capacity", "1")
    assert not res.ok and "(ValidationError)" in res.error
    res = aws("ec2", "describe-launch-templates", "--launch-template-names", f"missing-{uid}")
    assert not res.ok and "(InvalidLaunchTemplateName.NotFoundException)" in res.error
