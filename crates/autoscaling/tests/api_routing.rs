//! The EC2 and Auto Scaling APIs on a real server: requests are routed by the service their
//! signature names (ECS still answers its own), a signature for a service nobody serves gets
//! AWS's wrong-service error, refusals come in each service's own format, only the root key pair
//! may call them, and unsigned dev-mode requests are routed by their action. With host records
//! written straight into the store (no provisioner runs here), the operations over a group's
//! instances write what the group loop acts on.

use std::time::SystemTime;

use flotilla_api::{AuthMode, Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_hosts::{keys, AutoScalingGroup, Host, Lifecycle, Tag};
use flotilla_sigv4::{Credentials, SigningParams};
use flotilla_store::{Op, Txn};
use tokio::sync::oneshot;

const REGION: &str = "us-east-1";

struct Server {
    url: String,
    ctx: Ctx,
    root: Credentials,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(auth: AuthMode) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let credentials = RootCredentials {
            access_key_id: "AKIDROUTINGTEST".into(),
            secret_access_key: "routing-test-secret-0123456789abcdef".into(),
        };
        let config = ServerConfig {
            auth,
            extensions: flotilla_autoscaling::api::extensions(),
            ..ServerConfig::new(dir.path().to_path_buf(), credentials.clone())
        };
        let ctx = flotilla_api::server::open(&config, Clock::system()).await.expect("context");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let served = ctx.clone();
        let handle = tokio::spawn(async move {
            flotilla_api::server::serve_ctx(served, &config, listener, async move {
                let _ = rx.await;
            })
            .await
        });
        let root = Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
        Server { url, ctx, root, stop: Some(tx), handle: Some(handle), _dir: dir }
    }

    /// POSTs `body` signed with `creds` for `service` (unsigned when `creds` is `None`): the
    /// status and the body.
    async fn post(
        &self,
        service: &str,
        creds: Option<&Credentials>,
        target: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let mut headers = http::HeaderMap::new();
        let content_type =
            if target.is_some() { "application/x-amz-json-1.1" } else { "application/x-www-form-urlencoded" };
        headers.insert("content-type", content_type.parse().unwrap());
        if let Some(t) = target {
            headers.insert("x-amz-target", t.parse().unwrap());
        }
        if let Some(credentials) = creds {
            let params = SigningParams { credentials, region: REGION, service, time: SystemTime::now() };
            flotilla_sigv4::sign(
                &http::Method::POST,
                &self.url.parse().unwrap(),
                &mut headers,
                body.as_bytes(),
                &params,
            )
            .expect("sign");
        }
        let resp =
            reqwest::Client::new().post(&self.url).headers(headers).body(body.to_string()).send().await.expect("send");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    async fn ec2(&self, body: &str) -> (u16, String) {
        self.post("ec2", Some(&self.root), None, &format!("Version=2016-11-15&{body}")).await
    }

    async fn asg(&self, body: &str) -> (u16, String) {
        self.post("autoscaling", Some(&self.root), None, &format!("Version=2011-01-01&{body}")).await
    }

    async fn put<T: serde::Serialize>(&self, key: &str, value: &T) {
        let txn = Txn::new().then(Op::put(key, serde_json::to_vec(value).unwrap()));
        self.ctx.commit(txn).await.expect("commit");
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let kv = self.ctx.store.get(key).await.expect("get")?;
        Some(serde_json::from_slice(&kv.value).expect("record"))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.handle.take().expect("running").await.expect("join").expect("served");
    }
}

fn host(id: &str, group: &str, spot: bool) -> Host {
    let vpc = flotilla_hosts::network::default_vpc(REGION);
    Host {
        instance_id: id.into(),
        group: Some(group.into()),
        instance_type: "m5.large".into(),
        availability_zone: vpc.subnets[0].availability_zone.clone(),
        subnet_id: vpc.subnets[0].subnet_id.clone(),
        private_ip: "172.31.0.4".into(),
        spot,
        lifecycle: Lifecycle::InService,
        health: "Healthy".into(),
        protected_from_scale_in: false,
        launched_at_ms: 1_700_000_000_000,
        terminated_at_ms: None,
        launch_template: None,
        cluster: "default".into(),
        provisioner_handle: None,
        interruption: None,
        tags: vec![Tag { key: "team".into(), value: "a".into(), propagate_at_launch: true }],
        spot_instance_draining: false,
        drain_started_at_ms: None,
        termination_cause: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_service_their_signature_names() {
    let server = Server::start(AuthMode::Verify).await;
    let (status, body) =
        server.post("ecs", Some(&server.root), Some("AmazonEC2ContainerServiceV20141113.ListClusters"), "{}").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cluster/default"), "{body}");

    let (status, body) = server.ec2("Action=DescribeVpcs").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>"),
        "{body}"
    );
    assert!(body.contains("<isDefault>true</isDefault>"), "{body}");

    let (status, body) = server.asg("Action=DescribeAutoScalingGroups").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<DescribeAutoScalingGroupsResult><AutoScalingGroups></AutoScalingGroups>"), "{body}");
    assert!(body.contains("<ResponseMetadata><RequestId>"), "{body}");

    // A service nobody serves: ECS's verifier answers, as AWS does, naming the service it wants.
    let (status, body) = server.post("sqs", Some(&server.root), None, "Action=ListQueues").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidSignatureException") && body.contains("'ecs'"), "{body}");

    // Refusals come in the service's own format.
    let forged = Credentials::new(&server.root.access_key_id, "not-the-secret");
    let (status, body) = server.post("ec2", Some(&forged), None, "Action=DescribeVpcs&Version=2016-11-15").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.starts_with("<Response><Errors><Error><Code>SignatureDoesNotMatch</Code>"), "{body}");
    let (status, body) =
        server.post("autoscaling", None, None, "Action=DescribeAutoScalingGroups&Version=2011-01-01").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<ErrorResponse") && body.contains("<Code>MissingAuthenticationToken</Code>"), "{body}");
    let (status, body) = server.asg("Action=CreateAutoScalingGroup").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Type>Sender</Type><Code>ValidationError</Code>"), "{body}");
    assert!(body.contains("'autoScalingGroupName'"), "{body}");

    // ECS still refuses what is not signed for it.
    let (status, body) =
        server.post("ec2", Some(&server.root), Some("AmazonEC2ContainerServiceV20141113.ListClusters"), "{}").await;
    assert_eq!(status, 400, "{body}");

    let metrics = reqwest::get(format!("{}metrics", server.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("flotilla_api_requests_total{operation=\"DescribeVpcs\"}"), "{metrics}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_key_may_not_call_ec2_or_auto_scaling() {
    let server = Server::start(AuthMode::Verify).await;
    let register = r#"{"cluster":"default","totalResources":[{"name":"CPU","type":"INTEGER","integerValue":1024},{"name":"MEMORY","type":"INTEGER","integerValue":1024}]}"#;
    let (status, body) = server
        .post("ecs", Some(&server.root), Some("AmazonEC2ContainerServiceV20141113.RegisterContainerInstance"), register)
        .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let arn = v["containerInstance"]["containerInstanceArn"].as_str().unwrap();
    let key = flotilla_api::identity::instance_keys::issue(&server.ctx, "default", arn, "token-1").await.unwrap();
    let agent = Credentials::new(&key.access_key_id, &key.secret_access_key);

    let (status, body) = server.post("ec2", Some(&agent), None, "Action=DescribeVpcs&Version=2016-11-15").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>UnauthorizedOperation</Code>") && body.contains("ec2:DescribeVpcs"), "{body}");
    let (status, body) =
        server.post("autoscaling", Some(&agent), None, "Action=DescribeAutoScalingGroups&Version=2011-01-01").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("<Code>AccessDenied</Code>") && body.contains("autoscaling:DescribeAutoScalingGroups"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_dev_requests_are_routed_by_their_action() {
    let server = Server::start(AuthMode::Disabled).await;
    let (status, body) = server.post("", None, None, "Action=DescribeSubnets&Version=2016-11-15").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<subnetSet>"), "{body}");
    let (status, body) = server.post("", None, None, "Action=DescribeAutoScalingGroups").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<DescribeAutoScalingGroupsResult>"), "{body}");
    let (status, body) = server.post("", None, Some("AmazonEC2ContainerServiceV20141113.ListClusters"), "{}").await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_operations_write_what_the_group_loop_acts_on() {
    let server = Server::start(AuthMode::Verify).await;
    let (status, body) =
        server.ec2("Action=CreateLaunchTemplate&LaunchTemplateName=web&LaunchTemplateData.InstanceType=m5.large").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .asg("Action=CreateAutoScalingGroup&AutoScalingGroupName=g&LaunchTemplate.LaunchTemplateName=web&MinSize=1&MaxSize=4&DesiredCapacity=3&AvailabilityZones.member.1=us-east-1a")
        .await;
    assert_eq!(status, 200, "{body}");
    for (id, spot) in [("i-0000000000000000a", false), ("i-0000000000000000b", true)] {
        server.put(&keys::host(id), &host(id, "g", spot)).await;
    }

    let (_, body) = server.ec2("Action=DescribeInstances&Filter.1.Name=instance-lifecycle&Filter.1.Value.1=spot").await;
    assert!(body.contains("<instanceId>i-0000000000000000b</instanceId>"), "{body}");
    assert!(!body.contains("i-0000000000000000a"), "{body}");
    assert!(body.contains("<instanceLifecycle>spot</instanceLifecycle>"), "{body}");
    assert!(body.contains("<key>aws:autoscaling:groupName</key><value>g</value>"), "{body}");
    assert!(body.contains("<instanceState><code>16</code><name>running</name></instanceState>"), "{body}");
    let (_, body) =
        server.ec2("Action=DescribeInstances&Filter.1.Name=tag:aws:autoscaling:groupName&Filter.1.Value.1=g").await;
    assert_eq!(body.matches("<instanceId>").count(), 2, "{body}");

    let (status, body) = server
        .asg("Action=SetInstanceProtection&AutoScalingGroupName=g&InstanceIds.member.1=i-0000000000000000a&ProtectedFromScaleIn=true")
        .await;
    assert_eq!(status, 200, "{body}");
    let a: Host = server.get(&keys::host("i-0000000000000000a")).await.unwrap();
    assert!(a.protected_from_scale_in);

    let (status, body) = server
        .asg("Action=TerminateInstanceInAutoScalingGroup&InstanceId=i-0000000000000000b&ShouldDecrementDesiredCapacity=true")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Description>Terminating EC2 instance: i-0000000000000000b</Description>"), "{body}");
    assert!(body.contains("shrinking the capacity from 3 to 2"), "{body}");
    let b: Host = server.get(&keys::host("i-0000000000000000b")).await.unwrap();
    assert_eq!(b.lifecycle, Lifecycle::Terminating);
    let g: AutoScalingGroup = server.get(&keys::group("g")).await.unwrap();
    assert_eq!(g.desired_capacity, 2);
    let (_, body) = server.asg("Action=DescribeScalingActivities&AutoScalingGroupName=g").await;
    assert!(body.contains("<StatusCode>InProgress</StatusCode>"), "{body}");

    let (_, body) = server.asg("Action=DescribeAutoScalingGroups&AutoScalingGroupNames.member.1=g").await;
    assert!(body.contains("<InstanceId>i-0000000000000000a</InstanceId>"), "{body}");
    assert!(body.contains("<LifecycleState>Terminating</LifecycleState>"), "{body}");
    assert!(body.contains("<ProtectedFromScaleIn>true</ProtectedFromScaleIn>"), "{body}");
    let (_, body) = server.asg("Action=DescribeAutoScalingGroups&IncludeInstances=false").await;
    assert!(body.contains("<Instances></Instances>"), "{body}");
    let (_, body) = server.asg("Action=DescribeAutoScalingInstances&InstanceIds.member.1=i-0000000000000000a").await;
    assert!(body.contains("<AutoScalingGroupName>g</AutoScalingGroupName>"), "{body}");

    // Down to its minimum, the group cannot shed an instance without a replacement.
    let (status, body) = server.asg("Action=SetDesiredCapacity&AutoScalingGroupName=g&DesiredCapacity=1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .asg("Action=TerminateInstanceInAutoScalingGroup&InstanceId=i-0000000000000000a&ShouldDecrementDesiredCapacity=true")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("min size constraint"), "{body}");

    let (status, body) = server.asg("Action=DeleteAutoScalingGroup&AutoScalingGroupName=g").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>ResourceInUse</Code>"), "{body}");
    let (status, body) = server.asg("Action=DeleteAutoScalingGroup&AutoScalingGroupName=g&ForceDelete=true").await;
    assert_eq!(status, 200, "{body}");
    let g: AutoScalingGroup = server.get(&keys::group("g")).await.unwrap();
    assert_eq!(
        (g.status.as_deref(), g.min_size, g.max_size, g.desired_capacity),
        (Some("Delete in progress"), 0, 0, 0)
    );
    let (_, body) = server.asg("Action=DescribeAutoScalingGroups").await;
    assert!(body.contains("<Status>Delete in progress</Status>"), "{body}");
    let (status, body) = server.asg("Action=SetDesiredCapacity&AutoScalingGroupName=g&DesiredCapacity=0").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("pending delete"), "{body}");

    // The group loop's part, played here: the hosts go, then the record.
    for id in ["i-0000000000000000a", "i-0000000000000000b"] {
        let mut h: Host = server.get(&keys::host(id)).await.unwrap();
        h.lifecycle = Lifecycle::Terminated;
        server.put(&keys::host(id), &h).await;
    }
    server.ctx.commit(Txn::new().then(Op::delete(keys::group("g")))).await.unwrap();
    let (_, body) = server.asg("Action=DescribeAutoScalingGroups").await;
    assert!(!body.contains("<AutoScalingGroupName>g</AutoScalingGroupName>"), "{body}");
    let (_, body) = server.ec2("Action=DescribeInstances&InstanceId.1=i-0000000000000000a").await;
    assert!(body.contains("<name>terminated</name>"), "{body}");
    server.stop().await;
}

/// Every action, with parameters of every wrong shape: each answer is a success or a modeled
/// client error in the service's format, never a server error or a dropped connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_modeled_errors_never_server_errors() {
    let server = Server::start(AuthMode::Verify).await;
    let ec2 = [
        "CreateLaunchTemplate",
        "CreateLaunchTemplateVersion",
        "DescribeLaunchTemplates",
        "DescribeLaunchTemplateVersions",
        "ModifyLaunchTemplate",
        "DeleteLaunchTemplate",
        "DescribeInstances",
        "DescribeVpcs",
        "DescribeSubnets",
        "DescribeSecurityGroups",
        "DescribeAvailabilityZones",
    ];
    let asg = [
        "CreateAutoScalingGroup",
        "UpdateAutoScalingGroup",
        "DescribeAutoScalingGroups",
        "DeleteAutoScalingGroup",
        "SetDesiredCapacity",
        "SetInstanceProtection",
        "TerminateInstanceInAutoScalingGroup",
        "DescribeAutoScalingInstances",
        "DescribeScalingActivities",
        "DescribePolicies",
        "CreateOrUpdateTags",
        "DeleteTags",
        "DescribeTags",
    ];
    let junk = [
        "",
        "MinSize=-1&MaxSize=x&DesiredCapacity=99999999999999999999",
        "AutoScalingGroupName=%00%FF&LaunchTemplateName=%3Cx%3E&LaunchTemplateId=lt-&InstanceId=i-zz",
        "AutoScalingGroupName=g&MinSize=2&MaxSize=1&LaunchTemplate.LaunchTemplateName=nope&VPCZoneIdentifier=%2C%2C",
        "Tags.member.x.Key=a&Tags.member.1.PropagateAtLaunch=perhaps&InstanceIds.member.0=&Filters.member.1.Values.member.1=v",
        "Filter.1.Value.1=x&Filter.2.Name=tag%3A&LaunchTemplateVersion.1=%24Nope&MaxResults=0&NextToken=zz&MaxRecords=1000",
        "LaunchTemplateName=abc&LaunchTemplateData.UserData=%%%&TagSpecification.1.ResourceType=volume",
        "MixedInstancesPolicy.LaunchTemplate.Overrides.member.1.InstanceRequirements.VCpuCount.Min=1&ProtectedFromScaleIn=1",
        "DryRun=maybe&ShouldDecrementDesiredCapacity=yes&ForceDelete=2&SetDefaultVersion=-3",
    ];
    for (service, actions, version) in [("ec2", &ec2[..], "2016-11-15"), ("autoscaling", &asg[..], "2011-01-01")] {
        for action in actions {
            for params in junk {
                let body = format!("Action={action}&Version={version}&{params}");
                let (status, text) = server.post(service, Some(&server.root), None, &body).await;
                assert!(status == 200 || (400..500).contains(&status), "{service} {body}: {status} {text}");
                if status != 200 {
                    let shape = if service == "ec2" { "<Response><Errors><Error><Code>" } else { "<ErrorResponse" };
                    assert!(text.starts_with(shape) && text.contains("<Message>"), "{service} {body}: {text}");
                }
            }
        }
    }
    server.stop().await;
}
