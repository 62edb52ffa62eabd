//! CreateSubnet, DescribeSubnets and DeleteSubnet on a real server, over signed requests: blocks
//! inside the default VPC that overlap nothing, zones by name or id, tags and filters, the
//! record the control plane reads (`ec2/subnet/<id>`, the codec's JSON) surviving a restart,
//! creates racing for one block, and the default subnets kept as they were.

use std::path::PathBuf;
use std::time::SystemTime;

use flotilla_api::state::records::{Hidden, TaskRecord};
use flotilla_api::{AuthMode, Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_hosts::network::{default_vpc, Subnet};
use flotilla_hosts::{keys, Host, Lifecycle};
use flotilla_model::Task;
use flotilla_protocol::TaskNetwork;
use flotilla_sigv4::{Credentials, SigningParams};
use flotilla_store::{Op, Txn};
use tokio::sync::oneshot;

const REGION: &str = "us-east-1";

struct Server {
    url: String,
    ctx: Option<Ctx>,
    root: Credentials,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    async fn start(dir: PathBuf) -> Server {
        let credentials = RootCredentials {
            access_key_id: "AKIDSUBNETTEST".into(),
            secret_access_key: "subnet-test-secret-0123456789abcdef".into(),
        };
        let config = ServerConfig {
            auth: AuthMode::Verify,
            extensions: flotilla_autoscaling::api::extensions(),
            ..ServerConfig::new(dir, credentials.clone())
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
        Server { url, ctx: Some(ctx), root, stop: Some(tx), handle: Some(handle) }
    }

    fn ctx(&self) -> &Ctx {
        self.ctx.as_ref().expect("running")
    }

    /// A signed EC2 request: the status and the body.
    async fn ec2(&self, body: &str) -> (u16, String) {
        let body = format!("Version=2016-11-15&{body}");
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
        let params = SigningParams { credentials: &self.root, region: REGION, service: "ec2", time: SystemTime::now() };
        flotilla_sigv4::sign(&http::Method::POST, &self.url.parse().unwrap(), &mut headers, body.as_bytes(), &params)
            .expect("sign");
        let resp = reqwest::Client::new().post(&self.url).headers(headers).body(body).send().await.expect("send");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// A request that must succeed: its body.
    async fn ok(&self, body: &str) -> String {
        let (status, text) = self.ec2(body).await;
        assert_eq!(status, 200, "{body}: {text}");
        text
    }

    /// A request that must fail with `code`: its body.
    async fn refused(&self, body: &str, code: &str) -> String {
        let (status, text) = self.ec2(body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(&format!("<Code>{code}</Code>")), "{body}: wanted {code}, got {text}");
        text
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.handle.take().expect("running").await.expect("join").expect("served");
        if let Some(ctx) = self.ctx.take() {
            ctx.cache.stop().await;
        }
    }
}

/// The text of the first `<tag>` in `xml`.
fn first<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{tag}> in {xml}")) + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).expect("closed") + start;
    &xml[start..end]
}

/// Every `<subnetId>` in `xml`, in order.
fn subnet_ids(xml: &str) -> Vec<String> {
    xml.split("<subnetId>").skip(1).map(|s| s.split("</subnetId>").next().unwrap().to_string()).collect()
}

fn vpc_id() -> String {
    default_vpc(REGION).vpc_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_filter_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path().to_path_buf()).await;
    let vpc = vpc_id();
    let defaults = default_vpc(REGION);

    // The default subnets alone, as before.
    let before = server.ok("Action=DescribeSubnets").await;
    let default_ids: Vec<String> = defaults.subnets.iter().map(|s| s.subnet_id.clone()).collect();
    assert_eq!(subnet_ids(&before), default_ids);
    assert!(before.contains("<availableIpAddressCount>4091</availableIpAddressCount>"), "{before}");
    assert!(before.contains("<defaultForAz>true</defaultForAz><mapPublicIpOnLaunch>true</mapPublicIpOnLaunch></item>"));

    let body = server
        .ok(&format!(
            "Action=CreateSubnet&VpcId={vpc}&CidrBlock=172.31.48.0/24&AvailabilityZone=us-east-1b\
             &TagSpecification.1.ResourceType=subnet&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=tasks-b\
             &TagSpecification.1.Tag.2.Key=team&TagSpecification.1.Tag.2.Value=blue"
        ))
        .await;
    assert!(body.starts_with("<CreateSubnetResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>"));
    let a = first(&body, "subnetId").to_string();
    assert!(a.starts_with("subnet-") && a.len() == 24, "{a}");
    assert!(!default_ids.contains(&a));
    for part in [
        "<state>available</state>".to_string(),
        format!("<vpcId>{vpc}</vpcId>"),
        "<cidrBlock>172.31.48.0/24</cidrBlock>".into(),
        "<availableIpAddressCount>251</availableIpAddressCount>".into(),
        "<availabilityZone>us-east-1b</availabilityZone>".into(),
        "<availabilityZoneId>use1-az2</availabilityZoneId>".into(),
        "<defaultForAz>false</defaultForAz>".into(),
        "<mapPublicIpOnLaunch>false</mapPublicIpOnLaunch>".into(),
        format!("<subnetArn>arn:aws:ec2:{REGION}:"),
        format!(":subnet/{a}</subnetArn>"),
        "<tagSet><item><key>Name</key><value>tasks-b</value></item><item><key>team</key><value>blue</value></item></tagSet>"
            .into(),
        "<ipv6CidrBlockAssociationSet></ipv6CidrBlockAssociationSet>".into(),
        "<assignIpv6AddressOnCreation>false</assignIpv6AddressOnCreation>".into(),
    ] {
        assert!(body.contains(&part), "{part} not in {body}");
    }

    // By zone id, a /28 (the smallest); the zone defaults to the region's first.
    let b = server
        .ok(&format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock=172.31.64.0/28&AvailabilityZoneId=use1-az3"))
        .await;
    assert!(
        b.contains("<availabilityZone>us-east-1c</availabilityZone>") && b.contains(">11</availableIpAddressCount>")
    );
    let b = first(&b, "subnetId").to_string();
    let c = server.ok(&format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock=172.31.128.0/17")).await;
    assert!(c.contains("<availabilityZone>us-east-1a</availabilityZone>"), "{c}");
    assert!(c.contains("<availableIpAddressCount>32763</availableIpAddressCount>"), "{c}");
    let c = first(&c, "subnetId").to_string();

    // All of them: the defaults in zone order, then the created ones in id order.
    let all = server.ok("Action=DescribeSubnets").await;
    let mut created = vec![a.clone(), b.clone(), c.clone()];
    created.sort();
    let mut want = default_ids.clone();
    want.extend(created.iter().cloned());
    assert_eq!(subnet_ids(&all), want);

    let filtered = |filters: &str| {
        let server = &server;
        let filters = filters.to_string();
        async move { subnet_ids(&server.ok(&format!("Action=DescribeSubnets&{filters}")).await) }
    };
    assert_eq!(filtered("Filter.1.Name=default-for-az&Filter.1.Value.1=false").await, created);
    assert_eq!(filtered("Filter.1.Name=default-for-az&Filter.1.Value.1=true").await, default_ids);
    assert_eq!(filtered("Filter.1.Name=tag:Name&Filter.1.Value.1=tasks-*").await, vec![a.clone()]);
    assert_eq!(filtered("Filter.1.Name=tag-key&Filter.1.Value.1=team").await, vec![a.clone()]);
    assert_eq!(filtered("Filter.1.Name=cidr-block&Filter.1.Value.1=172.31.64.0/28").await, vec![b.clone()]);
    assert_eq!(
        filtered("Filter.1.Name=cidr-block-association.cidr-block&Filter.1.Value.1=172.31.128.0/17").await,
        vec![c.clone()]
    );
    assert_eq!(
        filtered("Filter.1.Name=availability-zone&Filter.1.Value.1=us-east-1b").await,
        vec![default_ids[1].clone(), a.clone()]
    );
    assert_eq!(
        filtered("Filter.1.Name=availability-zone-id&Filter.1.Value.1=use1-az3&Filter.2.Name=default-for-az&Filter.2.Value.1=false")
            .await,
        vec![b.clone()]
    );
    assert_eq!(filtered(&format!("Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}")).await.len(), 6);
    assert_eq!(filtered("Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-0000").await.len(), 0);
    assert_eq!(filtered("Filter.1.Name=state&Filter.1.Value.1=available").await.len(), 6);
    assert_eq!(filtered(&format!("Filter.1.Name=subnet-id&Filter.1.Value.1={c}")).await, vec![c.clone()]);
    assert_eq!(
        filtered(&format!("SubnetId.1={b}&SubnetId.2={}", default_ids[0])).await,
        vec![default_ids[0].clone(), b.clone()]
    );
    server
        .refused("Action=DescribeSubnets&Filter.1.Name=no-such-filter&Filter.1.Value.1=x", "InvalidParameterValue")
        .await;
    let text =
        server.refused("Action=DescribeSubnets&SubnetId.1=subnet-0123456789abcdef0", "InvalidSubnetID.NotFound").await;
    assert!(text.contains("The subnet ID 'subnet-0123456789abcdef0' does not exist"), "{text}");

    // Pages of five, by token.
    let page = server.ok("Action=DescribeSubnets&MaxResults=5").await;
    assert_eq!(subnet_ids(&page), want[..5]);
    let token = first(&page, "nextToken").to_string();
    let page = server.ok(&format!("Action=DescribeSubnets&MaxResults=5&NextToken={token}")).await;
    assert_eq!(subnet_ids(&page), want[5..]);
    assert!(!page.contains("<nextToken>"), "{page}");
    server.refused("Action=DescribeSubnets&MaxResults=2", "InvalidParameterValue").await;

    // Deleting: a created subnet goes, a default one stays, an unknown one is not found.
    let body = server.ok(&format!("Action=DeleteSubnet&SubnetId={b}")).await;
    assert!(body.starts_with("<DeleteSubnetResponse") && body.contains("<return>true</return>"), "{body}");
    assert!(server.ctx().store.get(&keys::subnet(&b)).await.unwrap().is_none());
    let text = server.refused(&format!("Action=DeleteSubnet&SubnetId={b}"), "InvalidSubnetID.NotFound").await;
    assert!(text.contains(&format!("The subnet ID '{b}' does not exist")), "{text}");
    let text =
        server.refused(&format!("Action=DeleteSubnet&SubnetId={}", default_ids[0]), "OperationNotPermitted").await;
    assert!(text.contains("cannot be deleted"), "{text}");
    server.refused("Action=DeleteSubnet", "MissingParameter").await;
    assert_eq!(subnet_ids(&server.ok("Action=DescribeSubnets").await).len(), 5);
    // Its block is free again.
    server.ok(&format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock=172.31.64.0/26")).await;

    // A subnet a live host was launched into stays until the host is gone.
    let mut host = Host {
        instance_id: "i-0000000000000000a".into(),
        group: None,
        instance_type: "m5.large".into(),
        availability_zone: "us-east-1b".into(),
        subnet_id: a.clone(),
        private_ip: "172.31.48.4".into(),
        spot: false,
        lifecycle: Lifecycle::InService,
        health: "Healthy".into(),
        protected_from_scale_in: false,
        launched_at_ms: 1_700_000_000_000,
        terminated_at_ms: None,
        launch_template: None,
        cluster: "default".into(),
        provisioner_handle: None,
        interruption: None,
        tags: vec![],
        spot_instance_draining: false,
        drain_started_at_ms: None,
        termination_cause: None,
    };
    let put = |h: &Host| Txn::new().then(Op::put(keys::host(&h.instance_id), flotilla_hosts::codec::encode(h)));
    server.ctx().commit(put(&host)).await.unwrap();
    server.refused(&format!("Action=DeleteSubnet&SubnetId={a}"), "DependencyViolation").await;
    host.lifecycle = Lifecycle::Terminated;
    server.ctx().commit(put(&host)).await.unwrap();

    // So does one an awsvpc task has its address in, until the task stops.
    let mut task = TaskRecord {
        task: Task {
            task_arn: Some("arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef".into()),
            cluster_arn: Some("arn:aws:ecs:us-east-1:000000000000:cluster/default".into()),
            last_status: Some("RUNNING".into()),
            desired_status: Some("RUNNING".into()),
            launch_type: Some("FARGATE".into()),
            ..Default::default()
        },
        reservation: None,
        hidden: Some(Box::new(Hidden {
            network: Some(TaskNetwork {
                subnet_id: a.clone(),
                cidr_block: "172.31.48.0/24".into(),
                ipv4_address: "172.31.48.4".into(),
                mac_address: "02:00:00:00:00:01".into(),
                interface_id: "eni-0123456789abcdef0".into(),
            }),
            ..Default::default()
        })),
    };
    let task_key = flotilla_api::state::keys::task("default", "0123456789abcdef");
    let put = |t: &TaskRecord| Txn::new().then(Op::put(&task_key, flotilla_api::state::codec::encode(t)));
    server.ctx().commit(put(&task)).await.unwrap();
    server.refused(&format!("Action=DeleteSubnet&SubnetId={a}"), "DependencyViolation").await;
    task.task.last_status = Some("STOPPED".into());
    task.task.desired_status = Some("STOPPED".into());
    server.ctx().commit(put(&task)).await.unwrap();
    server.ok(&format!("Action=DeleteSubnet&SubnetId={a}")).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_blocks_vpcs_zones_and_tags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path().to_path_buf()).await;
    let vpc = vpc_id();
    let create = |rest: &str| format!("Action=CreateSubnet&VpcId={vpc}&{rest}");

    let text = server
        .refused("Action=CreateSubnet&VpcId=vpc-0000000000000000&CidrBlock=172.31.48.0/24", "InvalidVpcID.NotFound")
        .await;
    assert!(text.contains("The vpc ID 'vpc-0000000000000000' does not exist"), "{text}");
    server.refused("Action=CreateSubnet&CidrBlock=172.31.48.0/24", "MissingParameter").await;
    server.refused(&create(""), "MissingParameter").await;

    for cidr in ["10.0.0.0/24", "172.31.48.0/29", "172.30.0.0/15", "172.32.0.0/24"] {
        let text = server.refused(&create(&format!("CidrBlock={cidr}")), "InvalidSubnet.Range").await;
        assert!(text.contains(&format!("The CIDR '{cidr}' is invalid.")), "{text}");
    }
    for cidr in ["172.31.48.1/24", "172.31.48.0", "not-a-block/24"] {
        server.refused(&create(&format!("CidrBlock={cidr}")), "InvalidParameterValue").await;
    }
    // The default subnets take 172.31.0.0 to 172.31.47.255; a whole-VPC block overlaps them.
    for cidr in ["172.31.0.0/24", "172.31.32.0/20", "172.31.40.0/21", "172.31.0.0/16", "172.31.32.0/19"] {
        let text = server.refused(&create(&format!("CidrBlock={cidr}")), "InvalidSubnet.Conflict").await;
        assert!(text.contains(&format!("The CIDR '{cidr}' conflicts with another subnet")), "{text}");
    }
    server.ok(&create("CidrBlock=172.31.48.0/20")).await;
    for cidr in ["172.31.48.0/20", "172.31.50.0/24", "172.31.56.0/22", "172.31.0.0/16"] {
        server.refused(&create(&format!("CidrBlock={cidr}")), "InvalidSubnet.Conflict").await;
    }

    let text =
        server.refused(&create("CidrBlock=172.31.64.0/24&AvailabilityZone=us-east-1z"), "InvalidParameterValue").await;
    assert!(text.contains("us-east-1z") && text.contains("us-east-1a, us-east-1b, us-east-1c"), "{text}");
    let text =
        server.refused(&create("CidrBlock=172.31.64.0/24&AvailabilityZoneId=use1-az9"), "InvalidParameterValue").await;
    assert!(text.contains("use1-az9"), "{text}");
    server
        .refused(
            &create("CidrBlock=172.31.64.0/24&AvailabilityZone=us-east-1a&AvailabilityZoneId=use1-az2"),
            "InvalidParameterCombination",
        )
        .await;
    server.ok(&create("CidrBlock=172.31.64.0/24&AvailabilityZone=us-east-1b&AvailabilityZoneId=use1-az2")).await;

    server
        .refused(
            &create("CidrBlock=172.31.65.0/24&TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=k"),
            "InvalidParameterValue",
        )
        .await;
    server
        .refused(
            &create(
                "CidrBlock=172.31.65.0/24&TagSpecification.1.ResourceType=subnet&TagSpecification.1.Tag.1.Key=aws:x",
            ),
            "InvalidParameterValue",
        )
        .await;
    server.refused(&create("CidrBlock=172.31.65.0/24&Ipv6CidrBlock=2600:1f18::/64"), "UnsupportedOperation").await;
    let (status, text) = server.ec2(&create("CidrBlock=172.31.65.0/24&DryRun=true")).await;
    assert_eq!(status, 412, "{text}");
    assert!(text.contains("<Code>DryRunOperation</Code>"), "{text}");
    // None of the refusals left a subnet behind.
    let all = server.ok("Action=DescribeSubnets&Filter.1.Name=default-for-az&Filter.1.Value.1=false").await;
    assert_eq!(subnet_ids(&all).len(), 2, "{all}");

    // Junk of every shape: modeled client errors, never a server error.
    for action in ["CreateSubnet", "DeleteSubnet", "DescribeSubnets"] {
        for junk in [
            "",
            "VpcId=&CidrBlock=&SubnetId=",
            "VpcId=%00%FF&CidrBlock=999.1.1.1/99&SubnetId=subnet-%3Cx%3E",
            "CidrBlock=172.31.200.0/255&AvailabilityZone=&TagSpecification.x.Tag.1.Key=a",
            "Filter.1.Value.1=x&Filter.2.Name=tag%3A&MaxResults=-1&NextToken=zz&SubnetId.0=",
            "TagSpecification.1.ResourceType=subnet&TagSpecification.1.Tag.1.Value=no-key&Ipv6Native=perhaps",
        ] {
            let body = format!("Action={action}&VpcId={vpc}&{junk}");
            let (status, text) = server.ec2(&body).await;
            assert!(status == 200 || (400..500).contains(&status), "{body}: {status} {text}");
            if status != 200 {
                assert!(
                    text.starts_with("<Response><Errors><Error><Code>") && text.contains("<Message>"),
                    "{body}: {text}"
                );
            }
        }
    }
    server.stop().await;
}

/// The record under `ec2/subnet/<id>` is the contract with the control plane: the codec's JSON of
/// a `Subnet`, its first host address the block's fifth. It outlives the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_is_what_the_control_plane_reads_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path().to_path_buf()).await;
    let vpc = vpc_id();
    let body = server
        .ok(&format!(
            "Action=CreateSubnet&VpcId={vpc}&CidrBlock=172.31.96.0/20&AvailabilityZone=us-east-1c\
             &TagSpecification.1.ResourceType=subnet&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=fargate"
        ))
        .await;
    let id = first(&body, "subnetId").to_string();
    let kv = server.ctx().store.get(&keys::subnet(&id)).await.unwrap().expect("stored");
    let stored: Subnet = flotilla_hosts::codec::decode(&kv.value).expect("the codec's JSON");
    let want = Subnet {
        subnet_id: id.clone(),
        availability_zone: "us-east-1c".into(),
        availability_zone_id: "use1-az3".into(),
        cidr_block: "172.31.96.0/20".into(),
        first_host: [172, 31, 96, 4],
        vpc_id: vpc.clone(),
        default_for_az: false,
        tags: vec![("Name".into(), "fargate".into())],
    };
    assert_eq!(stored, want);
    assert_eq!(stored.block(), Some(([172, 31, 96, 0], 20)));
    server.stop().await;

    let server = Server::start(dir.path().to_path_buf()).await;
    let body = server.ok(&format!("Action=DescribeSubnets&SubnetId.1={id}")).await;
    assert_eq!(subnet_ids(&body), vec![id.clone()]);
    assert!(body.contains("<cidrBlock>172.31.96.0/20</cidrBlock>"), "{body}");
    assert!(body.contains("<key>Name</key><value>fargate</value>"), "{body}");
    server
        .refused(&format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock=172.31.100.0/24"), "InvalidSubnet.Conflict")
        .await;
    server.stop().await;
}

/// Many creates at once for overlapping blocks: exactly one of each overlapping set commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_never_commit_overlapping_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let server = std::sync::Arc::new(Server::start(dir.path().to_path_buf()).await);
    let vpc = vpc_id();
    // Twelve requests over three disjoint /20s: each block asked for as a /20, and as /24s inside.
    let blocks = [
        "172.31.48.0/20",
        "172.31.48.0/24",
        "172.31.49.0/24",
        "172.31.50.0/24",
        "172.31.64.0/20",
        "172.31.64.0/24",
        "172.31.65.0/24",
        "172.31.66.0/24",
        "172.31.80.0/20",
        "172.31.80.0/24",
        "172.31.81.0/24",
        "172.31.82.0/24",
    ];
    let mut tasks = Vec::new();
    for cidr in blocks {
        let (server, body) = (server.clone(), format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock={cidr}"));
        tasks.push(tokio::spawn(async move { server.ec2(&body).await }));
    }
    let mut made = 0;
    for t in tasks {
        let (status, text) = t.await.unwrap();
        match status {
            200 => made += 1,
            400 => assert!(text.contains("<Code>InvalidSubnet.Conflict</Code>"), "{text}"),
            _ => panic!("{status} {text}"),
        }
    }
    let stored: Vec<Subnet> = server
        .ctx()
        .store
        .list(keys::SUBNET)
        .await
        .unwrap()
        .kvs
        .iter()
        .map(|kv| flotilla_hosts::codec::decode(&kv.value).unwrap())
        .collect();
    assert_eq!(stored.len(), made);
    for (i, x) in stored.iter().enumerate() {
        for y in &stored[i + 1..] {
            assert!(!x.overlaps(y), "{} overlaps {}", x.cidr_block, y.cidr_block);
        }
    }
    // At least one per /20 region, and at most three (the /24s) per region.
    assert!((3..=9).contains(&made), "{made}");
    let server = std::sync::Arc::into_inner(server).expect("alone");
    server.stop().await;
}
