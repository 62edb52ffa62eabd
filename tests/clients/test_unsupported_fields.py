"""Task definition fields Flotilla cannot honour are refused, each naming itself, through boto3:
RegisterTaskDefinition answers ClientException, and RunTask's container overrides answer
InvalidParameterException, rather than accepting a field and silently doing nothing with it."""

from __future__ import annotations

import botocore.exceptions
import pytest


def base_container(**extra):
    return {"name": "web", "image": "public.ecr.aws/nginx/nginx:latest", "memory": 128, **extra}


def register(ecs, family, container=None, **task):
    return ecs.register_task_definition(
        family=family, containerDefinitions=[container or base_container()], **task
    )


def refused(call) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response["Error"]
    return err["Code"], err["Message"]


CONTAINER_FIELDS = [
    ("environmentFiles", {"environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}]}),
    ("firelensConfiguration", {"firelensConfiguration": {"type": "fluentbit"}}),
    ("credentialSpecs", {"credentialSpecs": ["credentialspecdomainless:arn:aws:s3:::b/spec.json"]}),
    ("versionConsistency", {"versionConsistency": "enabled"}),
    ("linuxParameters.devices", {"linuxParameters": {"devices": [{"hostPath": "/dev/fuse"}]}}),
    ("linuxParameters.tmpfs", {"linuxParameters": {"tmpfs": [{"containerPath": "/run", "size": 64}]}}),
    ("linuxParameters.maxSwap", {"linuxParameters": {"maxSwap": 512}}),
    ("linuxParameters.swappiness", {"linuxParameters": {"swappiness": 10}}),
    (
        "resourceRequirements type InferenceAccelerator",
        {"resourceRequirements": [{"type": "InferenceAccelerator", "value": "device_1"}]},
    ),
]

TASK_FIELDS = [
    ("inferenceAccelerators", {"inferenceAccelerators": [{"deviceName": "device_1", "deviceType": "eia2.medium"}]}),
    ("proxyConfiguration", {"proxyConfiguration": {"type": "APPMESH", "containerName": "web"}}),
    ("ipcMode 'task'", {"ipcMode": "task"}),
    ("pidMode 'task'", {"pidMode": "task"}),
    ("enableFaultInjection", {"enableFaultInjection": True}),
    (
        "runtimePlatform.operatingSystemFamily",
        {"runtimePlatform": {"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}},
    ),
]


@pytest.mark.parametrize("field,extra", CONTAINER_FIELDS, ids=[f for f, _ in CONTAINER_FIELDS])
def test_container_fields_are_refused_naming_themselves(ecs, uid, field, extra):
    code, message = refused(lambda: register(ecs, f"unsup-{uid}", base_container(**extra)))
    assert code == "ClientException"
    assert message.startswith(field), message
    assert "not supported by Flotilla" in message, message
    assert "container web" in message, message


@pytest.mark.parametrize("field,extra", TASK_FIELDS, ids=[f for f, _ in TASK_FIELDS])
def test_task_fields_are_refused_naming_themselves(ecs, uid, field, extra):
    code, message = refused(lambda: register(ecs, f"unsup-{uid}", **extra))
    assert code == "ClientException"
    assert message.startswith(field), message
    assert "not supported by Flotilla" in message, message


def test_environment_files_say_what_to_use_instead(ecs, uid):
    extra = {"environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}]}
    _, message = refused(lambda: register(ecs, f"unsup-{uid}", base_container(**extra)))
    assert "S3" in message and "'environment' or 'secrets'" in message, message


def test_what_flotilla_honours_is_accepted(ecs, uid):
    container = base_container(
        resourceRequirements=[{"type": "GPU", "value": "1"}],
        linuxParameters={"initProcessEnabled": True, "sharedMemorySize": 64},
        versionConsistency="disabled",
    )
    td = register(ecs, f"ok-{uid}", container, pidMode="host", ipcMode="none")["taskDefinition"]
    assert td["containerDefinitions"][0]["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert (td["pidMode"], td["ipcMode"]) == ("host", "none")


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "many"])
def test_gpu_values_must_be_whole_numbers_of_gpus(ecs, uid, value):
    container = base_container(resourceRequirements=[{"type": "GPU", "value": value}])
    code, message = refused(lambda: register(ecs, f"gpu-{uid}", container))
    assert code == "ClientException"
    assert "resourceRequirements type GPU" in message, message


@pytest.mark.parametrize(
    "field,override",
    [
        ("environmentFiles", {"environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}]}),
        (
            "resourceRequirements type InferenceAccelerator",
            {"resourceRequirements": [{"type": "InferenceAccelerator", "value": "device_1"}]},
        ),
    ],
)
def test_container_overrides_are_refused_naming_the_field(ecs, uid, cluster, field, override):
    register(ecs, f"ovr-{uid}")
    code, message = refused(
        lambda: ecs.run_task(
            cluster=cluster,
            taskDefinition=f"ovr-{uid}",
            overrides={"containerOverrides": [{"name": "web", **override}]},
        )
    )
    assert code == "InvalidParameterException"
    assert message.startswith(f"overrides.containerOverrides {field}"), message


def test_cpu_architecture_becomes_a_required_attribute(ecs, uid):
    td = register(ecs, f"arch-{uid}", runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"})
    required = {(a["name"], a.get("value")) for a in td["taskDefinition"]["requiresAttributes"]}
    assert ("ecs.cpu-architecture", "arm64") in required, required
