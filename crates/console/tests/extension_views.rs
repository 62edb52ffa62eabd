//! The console's capacity provider, load balancer and namespace pages against a real server with
//! the real extensions (EC2 and Auto Scaling, ELBv2, Cloud Map, the console): things are made
//! through their signed APIs, then the signed views show them, with the health states and the
//! CapacityProviderReservation their own APIs and `/metrics` give.

use std::time::{Duration, SystemTime};

use flotilla_api::{Clock, Ctx, RootCredentials, ServerConfig};
use flotilla_endpoints::elb::{HealthState, TargetHealth};
use flotilla_sigv4::{Credentials, SigningParams};
use flotilla_store::{Op, Txn};
use serde_json::{json, Value};
use tokio::sync::oneshot;

const REGION: &str = "us-east-1";

struct Server {
    url: String,
    ctx: Ctx,
    root: Credentials,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let credentials = RootCredentials {
        access_key_id: "AKIDCONSOLEEXT".into(),
        secret_access_key: "console-ext-secret-0123456789abcdef".into(),
    };
    let mut extensions = flotilla_autoscaling::api::extensions();
    extensions.0.push(flotilla_elbv2::api::extension());
    extensions.0.push(flotilla_servicediscovery::extension());
    extensions.0.push(flotilla_console::extension());
    let config = ServerConfig {
        extensions,
        // Managed scaling measures every 200 ms, so that the gauge appears soon.
        capacity: flotilla_api::capacity::Settings { scaling_period: Duration::from_millis(200), ..Default::default() },
        ..ServerConfig::new(dir.path().to_path_buf(), credentials.clone())
    };
    let ctx = flotilla_api::server::open(&config, Clock::system()).await.expect("context");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let served = ctx.clone();
    tokio::spawn(async move {
        let _ = flotilla_api::server::serve_ctx(served, &config, listener, async move {
            let _ = rx.await;
        })
        .await;
    });
    let root = Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
    Server { url, ctx, root, stop: Some(tx), _dir: dir }
}

fn form(pairs: &[(&str, &str)]) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", k, utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Server {
    async fn signed(
        &self,
        method: http::Method,
        url: &str,
        service: &str,
        mut headers: http::HeaderMap,
        body: String,
    ) -> (u16, String) {
        let params = SigningParams { credentials: &self.root, region: REGION, service, time: SystemTime::now() };
        flotilla_sigv4::sign(&method, &url.parse().unwrap(), &mut headers, body.as_bytes(), &params).expect("sign");
        let resp = reqwest::Client::new().request(method, url).headers(headers).body(body).send().await.expect("send");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// A query-protocol call (ELBv2, Auto Scaling, EC2); asserts success, returns the XML.
    async fn query(&self, service: &str, version: &str, action: &str, params: &[(&str, &str)]) -> String {
        let mut all = vec![("Action", action), ("Version", version)];
        all.extend_from_slice(params);
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
        let (status, body) =
            self.signed(http::Method::POST, &format!("{}/", self.url), service, headers, form(&all)).await;
        assert_eq!(status, 200, "{action}: {body}");
        body
    }

    /// A JSON-protocol call (ECS, Cloud Map); asserts success.
    async fn json(&self, service: &str, target: &str, body: Value) -> Value {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", target.parse().unwrap());
        let (status, text) =
            self.signed(http::Method::POST, &format!("{}/", self.url), service, headers, body.to_string()).await;
        assert_eq!(status, 200, "{target}: {text}");
        serde_json::from_str(&text).expect("json")
    }

    async fn ecs(&self, op: &str, body: Value) -> Value {
        self.json("ecs", &format!("AmazonEC2ContainerServiceV20141113.{op}"), body).await
    }

    async fn cloud_map(&self, op: &str, body: Value) -> Value {
        self.json("servicediscovery", &format!("Route53AutoNaming_v20170314.{op}"), body).await
    }

    async fn elb(&self, action: &str, params: &[(&str, &str)]) -> String {
        self.query("elasticloadbalancing", "2015-12-01", action, params).await
    }

    /// A console view, signed as the browser signs it: `(status, body)`.
    async fn view(&self, path: &str) -> (u16, String) {
        let url = format!("{}/console/view/{path}", self.url);
        self.signed(http::Method::GET, &url, "ecs", http::HeaderMap::new(), String::new()).await
    }

    async fn page(&self, path: &str) -> String {
        let (status, body) = self.view(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}

/// The text of the first `<tag>` of an XML answer.
fn xml(body: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = body.find(&open).unwrap_or_else(|| panic!("no <{tag}> in {body}")) + open.len();
    let end = body[start..].find(&format!("</{tag}>")).expect("closed") + start;
    body[start..end].to_string()
}

/// The HTML of the table row (`<tr>...</tr>`) that contains `needle`.
fn row<'a>(html: &'a str, needle: &str) -> &'a str {
    let at = html.find(needle).unwrap_or_else(|| panic!("no {needle} in {html}"));
    let start = html[..at].rfind("<tr>").expect("row start");
    let end = html[at..].find("</tr>").expect("row end") + at;
    &html[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_pages_show_listeners_rules_and_target_health() {
    let s = server().await;
    let (status, empty) = s.view("load-balancers").await;
    assert_eq!(status, 200, "{empty}");
    assert!(empty.contains("No load balancers. Create one with"), "{empty}");

    let lb = xml(&s.elb("CreateLoadBalancer", &[("Name", "shop")]).await, "LoadBalancerArn");
    let s = &s;
    let tg = |name: &'static str| async move {
        xml(
            &s.elb(
                "CreateTargetGroup",
                &[
                    ("Name", name),
                    ("Protocol", "HTTP"),
                    ("Port", "80"),
                    ("TargetType", "ip"),
                    ("HealthCheckPath", "/ping"),
                ],
            )
            .await,
            "TargetGroupArn",
        )
    };
    let web = tg("web-tg").await;
    let api = tg("api-tg").await;
    let listener = xml(
        &s.elb(
            "CreateListener",
            &[
                ("LoadBalancerArn", &lb),
                ("Protocol", "HTTP"),
                ("Port", "8080"),
                ("DefaultActions.member.1.Type", "forward"),
                ("DefaultActions.member.1.TargetGroupArn", &web),
            ],
        )
        .await,
        "ListenerArn",
    );
    s.elb(
        "CreateRule",
        &[
            ("ListenerArn", &listener),
            ("Priority", "7"),
            ("Conditions.member.1.Field", "http-header"),
            ("Conditions.member.1.HttpHeaderConfig.HttpHeaderName", "X-Tier"),
            ("Conditions.member.1.HttpHeaderConfig.Values.member.1", "<gold>"),
            ("Actions.member.1.Type", "forward"),
            ("Actions.member.1.TargetGroupArn", &api),
        ],
    )
    .await;
    let targets = [
        ("Targets.member.1.Id", "10.0.0.11"),
        ("Targets.member.2.Id", "10.0.0.12"),
        ("Targets.member.3.Id", "10.0.0.13"),
    ];
    let mut register = vec![("TargetGroupArn", web.as_str())];
    register.extend_from_slice(&targets);
    s.elb("RegisterTargets", &register).await;
    s.elb("DeregisterTargets", &[("TargetGroupArn", &web), ("Targets.member.1.Id", "10.0.0.13")]).await;
    // What a load balancer node reports of one target, as the data plane records it.
    let group_id = web.rsplit('/').next().unwrap();
    let unhealthy = TargetHealth {
        state: HealthState::Unhealthy,
        reason: Some("Target.ResponseCodeMismatch".into()),
        description: Some("Health checks failed with these codes: [503]".into()),
        updated_at_ms: 1,
    };
    let key = flotilla_endpoints::keys::target_health(group_id, "10.0.0.12", 80);
    s.ctx.commit(Txn::new().then(Op::put(key, flotilla_endpoints::codec::encode(&unhealthy)))).await.expect("commit");

    let index = s.page("load-balancers").await;
    let lb_row = row(&index, "/console/load-balancers/shop");
    assert!(lb_row.contains("shop-") && lb_row.contains(".elb.localhost"), "{lb_row}");
    assert!(lb_row.contains("internet-facing") && lb_row.contains("application"), "{lb_row}");
    assert!(lb_row.contains("HTTP:8080 forward → web-tg"), "{lb_row}");

    let page = s.page("load-balancers/shop").await;
    assert!(page.contains("<h1>Load balancer shop</h1>"), "{page}");
    assert!(page.contains("header X-Tier is &lt;gold&gt;"), "rule conditions are escaped: {page}");
    assert!(row(&page, "header X-Tier").contains("forward → api-tg"), "{page}");
    assert!(page.contains("HTTP:traffic-port /ping"), "{page}");
    // Every target as DescribeTargetHealth states it.
    let described = s.elb("DescribeTargetHealth", &[("TargetGroupArn", &web)]).await;
    for (id, expected) in [("10.0.0.11", "initial"), ("10.0.0.12", "unhealthy"), ("10.0.0.13", "draining")] {
        let member = described.split("<member>").find(|m| m.contains(&format!("<Id>{id}</Id>"))).expect("described");
        assert_eq!(xml(member, "State"), expected, "{described}");
        let r = row(&page, &format!("{id}:80"));
        assert!(r.contains(&format!("status-{expected}\">{expected}</span>")), "{id}: {r}");
    }
    assert!(row(&page, "10.0.0.12:80")
        .contains("Target.ResponseCodeMismatch: Health checks failed with these codes: [503]"));
    // api-tg has no targets; its table says so.
    let api_section = &page[page.find("api-tg</h3>").expect("api-tg section")..];
    assert!(api_section.contains("None."), "{api_section}");

    let (status, missing) = s.view("load-balancers/nope").await;
    assert_eq!(status, 400, "{missing}");
    assert!(missing.contains("LoadBalancerNotFound") && missing.contains("nope"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_pages_show_services_instances_health_and_tasks() {
    let s = server().await;
    assert!(s.page("namespaces").await.contains("No namespaces."));
    s.cloud_map("CreatePrivateDnsNamespace", json!({"Name": "corp.local", "Vpc": "vpc-1"})).await;
    s.cloud_map("CreateHttpNamespace", json!({"Name": "apps<b>"})).await;
    let list = s.cloud_map("ListNamespaces", json!({})).await;
    let ns_id = |name: &str| {
        list["Namespaces"].as_array().unwrap().iter().find(|n| n["Name"] == name).expect("namespace")["Id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let corp = ns_id("corp.local");
    let svc = s
        .cloud_map(
            "CreateService",
            json!({"Name": "billing", "NamespaceId": corp, "HealthCheckCustomConfig": {"FailureThreshold": 1},
                   "DnsConfig": {"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 15}]}}),
        )
        .await["Service"]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let task = "arn:aws:ecs:us-east-1:000000000000:task/prod/0123456789abcdef";
    s.cloud_map(
        "RegisterInstance",
        json!({"ServiceId": svc, "InstanceId": "one", "Attributes": {"AWS_INSTANCE_IPV4": "10.1.0.5",
               "AWS_INSTANCE_PORT": "8443", "AWS_INIT_HEALTH_STATUS": "UNHEALTHY", "ECS_TASK_ARN": task}}),
    )
    .await;
    s.cloud_map(
        "RegisterInstance",
        json!({"ServiceId": svc, "InstanceId": "two", "Attributes": {"AWS_INSTANCE_IPV4": "10.1.0.6", "note": "<i>"}}),
    )
    .await;

    let index = s.page("namespaces").await;
    let r = row(&index, "corp.local");
    assert!(r.contains(&format!("/console/namespaces/{corp}")) && r.contains("DNS_PRIVATE"), "{r}");
    assert!(r.contains("<td>1</td>"), "one service: {r}");
    let http = row(&index, "apps&lt;b&gt;");
    assert!(http.contains("HTTP") && http.contains("<td>0</td>"), "{http}");

    let page = s.page(&format!("namespaces/{corp}")).await;
    assert!(page.contains("<h1>Namespace corp.local</h1>"), "{page}");
    assert!(page.contains("billing.corp.local"), "{page}");
    assert!(page.contains("MULTIVALUE: A (TTL 15 s)"), "{page}");
    assert!(page.contains("custom"), "{page}");
    let statuses = s.cloud_map("GetInstancesHealthStatus", json!({"ServiceId": svc})).await;
    for id in ["one", "two"] {
        let status = statuses["Status"][id].as_str().expect("status");
        let r = row(&page, &format!("<td>{id}</td>"));
        assert!(r.contains(&format!(">{status}</span>")), "{id} {status}: {r}");
    }
    let one = row(&page, "<td>one</td>");
    assert!(one.contains("10.1.0.5:8443"), "{one}");
    assert!(one.contains("href=\"/console/clusters/prod/tasks/0123456789abcdef\""), "{one}");
    assert!(row(&page, "<td>two</td>").contains("note=&lt;i&gt;"), "attributes are escaped");

    let (status, missing) = s.view("namespaces/ns-missing").await;
    assert_eq!(status, 400, "{missing}");
    assert!(missing.contains("NamespaceNotFound") && missing.contains("ns-missing"), "{missing}");
}

/// The gauge `/metrics` shows for `provider` on `cluster`, once managed scaling has set it.
async fn metric(s: &Server, cluster: &str, provider: &str) -> Option<String> {
    let text = reqwest::get(format!("{}/metrics", s.url)).await.ok()?.text().await.ok()?;
    let labels = format!("cluster=\"{cluster}\",capacity_provider=\"{provider}\"");
    text.lines()
        .find(|l| l.starts_with("flotilla_capacity_provider_reservation{") && l.contains(&labels))
        .and_then(|l| l.rsplit(' ').next().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_provider_pages_show_the_group_hosts_and_the_reservation_metrics_exports() {
    let s = server().await;
    s.ecs("CreateCluster", json!({"clusterName": "prod"})).await;
    s.query(
        "ec2",
        "2016-11-15",
        "CreateLaunchTemplate",
        &[("LaunchTemplateName", "hosts"), ("LaunchTemplateData.InstanceType", "m5.large")],
    )
    .await;
    let subnets = s.query("ec2", "2016-11-15", "DescribeSubnets", &[]).await;
    let subnet = xml(&subnets, "subnetId");
    s.query(
        "autoscaling",
        "2011-01-01",
        "CreateAutoScalingGroup",
        &[
            ("AutoScalingGroupName", "fleet"),
            ("LaunchTemplate.LaunchTemplateName", "hosts"),
            ("MinSize", "0"),
            ("MaxSize", "3"),
            ("DesiredCapacity", "0"),
            ("VPCZoneIdentifier", &subnet),
            ("NewInstancesProtectedFromScaleIn", "true"),
        ],
    )
    .await;
    let groups = s.query("autoscaling", "2011-01-01", "DescribeAutoScalingGroups", &[]).await;
    let arn = xml(&groups, "AutoScalingGroupARN");
    s.ecs(
        "CreateCapacityProvider",
        json!({"name": "fleet-cp", "autoScalingGroupProvider": {"autoScalingGroupArn": arn,
               "managedScaling": {"status": "ENABLED", "targetCapacity": 90, "maximumScalingStepSize": 2},
               "managedTerminationProtection": "ENABLED"}}),
    )
    .await;
    s.ecs(
        "PutClusterCapacityProviders",
        json!({"cluster": "prod", "capacityProviders": ["fleet-cp"],
               "defaultCapacityProviderStrategy": [{"capacityProvider": "fleet-cp", "weight": 1}]}),
    )
    .await;
    // A host of the group, as the group loop records one (no provisioner runs in this test).
    let host = flotilla_hosts::Host {
        instance_id: "i-0feedface0000001".into(),
        group: Some("fleet".into()),
        instance_type: "m5.large".into(),
        availability_zone: "us-east-1a".into(),
        subnet_id: subnet.clone(),
        private_ip: "172.31.0.9".into(),
        spot: true,
        lifecycle: flotilla_hosts::Lifecycle::InService,
        health: "Healthy".into(),
        protected_from_scale_in: true,
        launched_at_ms: 0,
        terminated_at_ms: None,
        launch_template: None,
        cluster: "prod".into(),
        provisioner_handle: None,
        interruption: None,
        tags: Vec::new(),
        spot_instance_draining: false,
        drain_started_at_ms: None,
        termination_cause: None,
    };
    let key = flotilla_hosts::keys::host(&host.instance_id);
    s.ctx.commit(Txn::new().then(Op::put(key, flotilla_hosts::codec::encode(&host)))).await.expect("host");
    // A task that waits in PROVISIONING for the provider's capacity.
    s.ecs(
        "RegisterTaskDefinition",
        json!({"family": "web", "cpu": "256", "memory": "512",
               "containerDefinitions": [{"name": "web", "image": "nginx", "essential": true}]}),
    )
    .await;
    s.ecs("RunTask", json!({"cluster": "prod", "taskDefinition": "web"})).await;

    let mut exported = None;
    for _ in 0..100 {
        exported = metric(&s, "prod", "fleet-cp").await;
        if exported.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exported: f64 = exported.expect("managed scaling exports the reservation").parse().expect("number");

    let index = s.page("capacity-providers").await;
    for name in ["FARGATE", "FARGATE_SPOT", "fleet-cp"] {
        assert!(index.contains(&format!("href=\"/console/capacity-providers/{name}\"")), "{name}: {index}");
    }
    let r = row(&index, "/console/capacity-providers/fleet-cp");
    assert!(r.contains("fleet <span class=\"sizes\">min 0 / desired"), "{r}");
    assert!(r.contains("1 in service (1 Spot, 0 on-demand)"), "{r}");
    assert!(r.contains("target 90%, steps 1-2"), "{r}");
    assert!(r.contains("1 waiting"), "{r}");

    let page = s.page("capacity-providers/fleet-cp").await;
    assert!(page.contains("<h1>Capacity provider fleet-cp</h1>"), "{page}");
    let shown = row(&page, "/console/clusters/prod\"");
    let value = shown.split("class=\"reservation\">").nth(1).and_then(|v| v.split('%').next()).expect("value");
    // The loop measures again every period: a page may show the next value; both must agree then.
    let now: f64 = metric(&s, "prod", "fleet-cp").await.expect("metric").parse().unwrap();
    let shown_value: f64 = value.parse().expect("percent");
    let near = |v: f64| (shown_value - v).abs() < 0.1;
    assert!(near(exported) || near(now), "page {shown_value}, /metrics {exported} then {now}");
    assert!(shown.contains("<td>1</td>"), "one task waits: {shown}");
    let h = row(&page, "i-0feedface0000001");
    assert!(h.contains("m5.large") && h.contains("us-east-1a") && h.contains("Spot"), "{h}");
    assert!(h.contains("not registered"), "{h}");

    let (status, missing) = s.view("capacity-providers/nope%3Cx%3E").await;
    assert_eq!(status, 400, "{missing}");
    assert!(missing.contains("ClientException") && missing.contains("nope<x>"), "{missing}");
}
