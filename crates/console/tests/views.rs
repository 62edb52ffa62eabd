//! The console's ECS pages on a real server with a hollow agent: the cluster, container
//! instance, service, tasks and task definition pages show what the ECS API reports, carry the
//! action buttons and forms the script drives, escape what users wrote, page the tasks list,
//! answer unknown names with ECS's errors, and refuse requests not signed by the root key pair.

use std::time::{Duration, SystemTime};

use flotilla_api::{AuthMode, Clock, RootCredentials, ServerConfig};
use flotilla_sigv4::{Credentials, SigningParams};
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

const REGION: &str = "us-east-1";
const XSS: &str = "<script>alert(1)</script>";

struct Server {
    base: String,
    root: Credentials,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    agent_stop: watch::Sender<bool>,
    agent: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server with the console, and one hollow agent in cluster `web`, zone us-east-1b.
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let credentials = RootCredentials {
            access_key_id: "AKIDCONSOLETEST".into(),
            secret_access_key: "console-test-secret-0123456789".into(),
        };
        let config = ServerConfig {
            auth: AuthMode::Verify,
            extensions: flotilla_api::Extensions::new([flotilla_console::extension()]),
            ..ServerConfig::new(dir.path().join("server"), credentials.clone())
        };
        let ctx = flotilla_api::server::open(&config, Clock::system()).await.expect("context");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            flotilla_api::server::serve_ctx(ctx, &config, listener, async move {
                let _ = rx.await;
            })
            .await
        });
        let root = Credentials::new(&credentials.access_key_id, &credentials.secret_access_key);
        let (agent_stop, agent_rx) = watch::channel(false);
        let mut s =
            Server { base: base.clone(), root, stop, handle, agent_stop, agent: tokio::spawn(async {}), _dir: dir };
        s.call("CreateCluster", json!({"clusterName": "web"})).await;
        let api = flotilla_agent::session::ApiClient::new(
            &base,
            REGION,
            Credentials::new(&credentials.access_key_id, &credentials.secret_access_key),
        )
        .expect("agent client");
        let reg = flotilla_agent::session::RegistrationConfig {
            cluster: "web".into(),
            data_dir: s._dir.path().join("agent"),
            availability_zone: "us-east-1b".into(),
            instance_type: "flotilla.test".into(),
            attributes: vec![],
            cpu: Some(4096),
            memory: Some(8192),
            memory_reserved_mib: 0,
            network_modes: vec!["bridge".into(), "host".into()],
            agent_version: "test".into(),
            docker_version: "test".into(),
            state_file: "agent.json".into(),
            ec2_instance_id: None,
            gpus: Vec::new(),
        };
        let cfg = flotilla_agent::hollow::hollow_config(&reg, 0);
        std::fs::create_dir_all(&cfg.data_dir).expect("agent dir");
        s.agent = tokio::spawn(async move {
            let _ = flotilla_agent::hollow::run_hollow(api, cfg, agent_rx).await;
        });
        s
    }

    async fn raw(&self, op: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/x-amz-json-1.1".parse().unwrap());
        headers.insert("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{op}").parse().unwrap());
        let url = format!("{}/", self.base);
        let params = SigningParams { credentials: &self.root, region: REGION, service: "ecs", time: SystemTime::now() };
        flotilla_sigv4::sign(&http::Method::POST, &url.parse().unwrap(), &mut headers, body.as_bytes(), &params)
            .expect("sign");
        let resp = reqwest::Client::new().post(&url).headers(headers).body(body).send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn call(&self, op: &str, body: Value) -> Value {
        let (status, out) = self.raw(op, &body).await;
        assert_eq!(status, 200, "{op} failed: {out}");
        out
    }

    /// GET of a view signed with `creds` (or unsigned): status and body.
    async fn get_as(&self, path: &str, creds: Option<&Credentials>) -> (u16, String) {
        let url = format!("{}/console/view{path}", self.base);
        let mut headers = http::HeaderMap::new();
        if let Some(c) = creds {
            let params = SigningParams { credentials: c, region: REGION, service: "ecs", time: SystemTime::now() };
            flotilla_sigv4::sign(&http::Method::GET, &url.parse().unwrap(), &mut headers, b"", &params).expect("sign");
        }
        let resp = reqwest::Client::new().get(&url).headers(headers).send().await.expect("send");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// A page that renders: its HTML.
    async fn page(&self, path: &str) -> String {
        let (status, body) = self.get_as(path, Some(&self.root)).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// A page that fails: its error code and message.
    async fn error(&self, path: &str) -> (String, String) {
        let (status, body) = self.get_as(path, Some(&self.root)).await;
        assert_eq!(status, 400, "{path} should fail: {body}");
        let v: Value = serde_json::from_str(&body).expect("error JSON");
        (v["__type"].as_str().unwrap_or("").into(), v["message"].as_str().unwrap_or("").into())
    }

    async fn stop(self) {
        let _ = self.agent_stop.send(true);
        let _ = self.agent.await;
        let _ = self.stop.send(());
        self.handle.await.expect("join").expect("served");
    }
}

/// Polls `probe` every 100 ms for up to 30 s until it yields `Some`.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The connected instance's ARN.
async fn instance(s: &Server) -> String {
    eventually("the hollow agent is connected", || async {
        let arns = s.call("ListContainerInstances", json!({"cluster": "web"})).await;
        let arn = arns["containerInstanceArns"][0].as_str()?.to_string();
        let d = s.call("DescribeContainerInstances", json!({"cluster": "web", "containerInstances": [arn]})).await;
        (d["containerInstances"][0]["agentConnected"] == true).then_some(arn)
    })
    .await
}

fn register_app() -> Value {
    json!({
        "family": "app",
        "containerDefinitions": [{
            "name": "main", "image": "busybox", "cpu": 16, "memory": 32,
            "command": ["sh", "-c", XSS],
            "portMappings": [{"containerPort": 80, "hostPort": 0}]
        }],
        "tags": [{"key": "owner", "value": XSS}]
    })
}

fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

/// How many task links a page holds.
fn task_links(html: &str) -> usize {
    html.matches("href=\"/console/clusters/web/tasks/").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_what_the_api_reports() {
    let s = Server::start().await;
    let ci = instance(&s).await;
    let ci_id = short(&ci).to_string();
    s.call("RegisterTaskDefinition", register_app()).await;
    s.call(
        "CreateService",
        json!({"cluster": "web", "serviceName": "api", "taskDefinition": "app", "desiredCount": 2}),
    )
    .await;
    let run = s
        .call(
            "RunTask",
            json!({
                "cluster": "web", "taskDefinition": "app", "tags": [{"key": "note", "value": XSS}],
                "overrides": {"containerOverrides": [{"name": "main", "command": ["echo", XSS]}]}
            }),
        )
        .await;
    let task_arn = run["tasks"][0]["taskArn"].as_str().expect("task ARN").to_string();
    let task_id = short(&task_arn).to_string();
    eventually("the service and the task run", || async {
        let d = s.call("DescribeServices", json!({"cluster": "web", "services": ["api"]})).await;
        let t = s.call("DescribeTasks", json!({"cluster": "web", "tasks": [task_arn]})).await;
        (d["services"][0]["runningCount"] == 2 && t["tasks"][0]["lastStatus"] == "RUNNING").then_some(())
    })
    .await;

    // The clusters and cluster pages: counts, the instance with Drain, the service.
    let clusters = s.page("/clusters").await;
    assert!(clusters.contains("href=\"/console/clusters/web\""), "{clusters}");
    let cluster = s.page("/clusters/web").await;
    assert!(cluster.contains("<h1>Cluster web</h1>"), "{cluster}");
    assert!(cluster.contains(&format!("<a href=\"/console/clusters/web/instances/{ci_id}\">{ci_id}</a>")), "{cluster}");
    assert!(cluster.contains("us-east-1b"), "{cluster}");
    let d = s.call("DescribeContainerInstances", json!({"cluster": "web", "containerInstances": [ci]})).await;
    let remaining_cpu = d["containerInstances"][0]["remainingResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "CPU")
        .unwrap()["integerValue"]
        .as_i64()
        .unwrap();
    assert!(cluster.contains(&format!("{remaining_cpu} / 4096")), "{cluster}");
    assert!(cluster.contains(">Drain</button>") && cluster.contains("&quot;DRAINING&quot;"), "{cluster}");
    assert!(cluster.contains("<a href=\"/console/clusters/web/services/api\">api</a>"), "{cluster}");
    assert!(cluster.contains("<a href=\"/console/clusters/web/tasks\">Tasks</a>"), "{cluster}");

    // The instance page: resources as registered, its tasks.
    let inst = s.page(&format!("/clusters/web/instances/{ci_id}")).await;
    assert!(inst.contains(&format!("<h1>Container instance {ci_id}</h1>")), "{inst}");
    assert!(inst.contains("<td>CPU</td><td>4096</td>") && inst.contains("<td>MEMORY</td><td>8192</td>"), "{inst}");
    assert!(inst.contains(&format!(">{task_id}</a>")), "{inst}");

    // The service page: counts, the desired count form, deployments, tasks by zone and instance.
    let svc = s.page("/clusters/web/services/api").await;
    assert!(svc.contains("<h1>Service api</h1>"), "{svc}");
    assert!(svc.contains("name=\"desiredCount\" type=\"number\" min=\"0\" data-type=\"int\" value=\"2\""), "{svc}");
    assert!(svc.contains(">Update</button>") && svc.contains(">Force new deployment</button>"), "{svc}");
    assert!(svc.contains("&quot;forceNewDeployment&quot;:true"), "{svc}");
    assert!(svc.contains("<a href=\"/console/task-definitions/app/1\">app:1</a>"), "{svc}");
    assert!(svc.contains("<progress value=\"2\" max=\"2\">"), "{svc}");
    assert!(svc.contains("<h3>us-east-1b</h3>"), "{svc}");
    assert_eq!(task_links(&svc), 2, "the service's two tasks, not the RunTask one: {svc}");
    assert!(!svc.contains(&task_id), "{svc}");

    // The task page: status, the Stop task button with its ARN, the logs, escaped tags.
    let task = s.page(&format!("/clusters/web/tasks/{task_id}")).await;
    assert!(task.contains(&format!("<h1>Task {task_id}</h1>")), "{task}");
    assert!(task.contains("status-running\">RUNNING"), "{task}");
    assert!(task.contains(">Stop task</button>"), "{task}");
    assert!(task.contains(&format!("&quot;task&quot;:&quot;{task_arn}&quot;")), "{task}");
    assert!(
        task.contains(&format!(
            "<pre class=\"logs\" id=\"logs-{task_id}\" data-keep data-logs-cluster=\"web\" data-logs-task=\"{task_arn}\">"
        )),
        "{task}"
    );
    assert!(task.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !task.contains(XSS), "{task}");
    assert!(task.contains("<h2>Overrides</h2>") && task.contains("&quot;echo&quot;"), "{task}");
    assert!(task.contains("<td>main</td><td>busybox</td>"), "{task}");

    // Once stopped: no Stop task button, the stop reason shown.
    s.call("StopTask", json!({"cluster": "web", "task": task_arn, "reason": "done <now>"})).await;
    let task = s.page(&format!("/clusters/web/tasks/{task_id}")).await;
    assert!(!task.contains(">Stop task</button>"), "{task}");
    assert!(task.contains("done &lt;now&gt;"), "{task}");

    // Task definitions: families, revisions, the JSON (escaped) and the registration form.
    let families = s.page("/task-definitions").await;
    assert!(families.contains("<a href=\"/console/task-definitions/app/1\">app:1</a>"), "{families}");
    let revisions = s.page("/task-definitions/app").await;
    assert!(revisions.contains(">Deregister</button>"), "{revisions}");
    let td = s.page("/task-definitions/app/1").await;
    assert!(td.contains("<h1>Task definition app:1</h1>"), "{td}");
    assert!(td.contains("&lt;script&gt;") && !td.contains(XSS), "{td}");
    let textarea = td.split("<textarea").nth(1).expect("a textarea").split("</textarea>").next().unwrap();
    assert!(textarea.contains("name=\"definition\" data-type=\"body\""), "{textarea}");
    assert!(textarea.contains("&quot;family&quot;: &quot;app&quot;"), "{textarea}");
    assert!(textarea.contains("&quot;owner&quot;"), "tags are registrable: {textarea}");
    for dropped in ["taskDefinitionArn", "revision", "status", "registeredAt", "compatibilities", "requiresAttributes"]
    {
        assert!(!textarea.contains(&format!("&quot;{dropped}&quot;")), "{dropped} in {textarea}");
    }
    assert!(td.contains(">Register new revision</button>"), "{td}");

    // Draining the instance turns its button into Activate.
    s.call(
        "UpdateContainerInstancesState",
        json!({"cluster": "web", "containerInstances": [ci], "status": "DRAINING"}),
    )
    .await;
    let cluster = s.page("/clusters/web").await;
    assert!(cluster.contains(">Activate</button>") && !cluster.contains(">Drain</button>"), "{cluster}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_list_filters_and_pages() {
    let s = Server::start().await;
    instance(&s).await;
    s.call("RegisterTaskDefinition", register_app()).await;
    let mut arns = Vec::new();
    for _ in 0..11 {
        let out = s.call("RunTask", json!({"cluster": "web", "taskDefinition": "app", "count": 10})).await;
        assert_eq!(out["failures"], json!([]), "{out}");
        arns.extend(out["tasks"].as_array().unwrap().iter().map(|t| t["taskArn"].as_str().unwrap().to_string()));
    }
    let stopped = arns[0].clone();
    s.call("StopTask", json!({"cluster": "web", "task": stopped})).await;

    let first = s.page("/clusters/web/tasks").await;
    assert!(first.contains("110 tasks · page 1 of 2"), "{first}");
    assert_eq!(task_links(&first), 100);
    assert!(first.contains("href=\"/console/clusters/web/tasks?page=2\">Next</a>"), "{first}");
    let second = s.page("/clusters/web/tasks?page=2").await;
    assert_eq!(task_links(&second), 10);
    assert!(second.contains(">Previous</a>") && !second.contains(">Next</a>"), "{second}");
    // Tasks meant to run come first: the stopped one is on the last page.
    assert!(second.contains(short(&stopped)) && !first.contains(short(&stopped)), "{second}");

    let only_stopped = s.page("/clusters/web/tasks?status=STOPPED").await;
    assert!(only_stopped.contains("1 tasks · page 1 of 1"), "{only_stopped}");
    assert!(only_stopped.contains(short(&stopped)), "{only_stopped}");
    let running = s.page("/clusters/web/tasks?status=RUNNING&family=app").await;
    assert!(running.contains("109 tasks"), "{running}");
    let none = s.page("/clusters/web/tasks?service=nothing").await;
    assert!(none.contains("0 tasks") && none.contains("None."), "{none}");

    let (code, msg) = s.error("/clusters/web/tasks?status=DONE").await;
    assert_eq!(code, "InvalidParameterException");
    assert!(msg.contains("status"), "{msg}");
    let (code, msg) = s.error("/clusters/web/tasks?page=0").await;
    assert!(code == "InvalidParameterException" && msg.contains("page"), "{msg}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_get_ecs_errors_and_only_the_root_key_signs() {
    let s = Server::start().await;
    s.call("RegisterTaskDefinition", register_app()).await;
    assert_eq!(s.error("/clusters/nope").await, ("ClusterNotFoundException".into(), "Cluster not found.".into()));
    assert_eq!(s.error("/clusters/nope/tasks").await.0, "ClusterNotFoundException");
    assert_eq!(s.error("/clusters/web/services/nope").await.0, "ServiceNotFoundException");
    assert_eq!(s.error("/clusters/web/tasks/0123abcd").await.0, "InvalidParameterException");
    assert_eq!(s.error("/clusters/web/instances/0123abcd").await.0, "InvalidParameterException");
    assert_eq!(s.error("/task-definitions/nope").await.0, "ClientException");
    assert_eq!(s.error("/task-definitions/app/7").await.0, "ClientException");
    assert_eq!(s.error("/task-definitions/app/x").await.0, "InvalidParameterException");

    let wrong = Credentials::new("AKIDCONSOLETEST", "not-the-secret");
    let (status, body) = s.get_as("/clusters/web", Some(&wrong)).await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(!body.contains("<h1>"), "{body}");
    let (status, body) = s.get_as("/clusters/web", None).await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(!body.contains("<h1>"), "{body}");
    s.stop().await;
}

/// An agent's own key pair (earned with a join token) is a key the server knows, but not one
/// that may look at the fleet: the console answers it with AccessDeniedException and no page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_key_pair_sees_no_page() {
    let s = Server::start().await;
    let url = format!("{}/v1/tokens?cluster=web&ttlSeconds=600", s.base);
    let mut headers = http::HeaderMap::new();
    let params = SigningParams { credentials: &s.root, region: REGION, service: "ecs", time: SystemTime::now() };
    flotilla_sigv4::sign(&http::Method::POST, &url.parse().unwrap(), &mut headers, b"", &params).expect("sign");
    let minted: Value =
        reqwest::Client::new().post(&url).headers(headers).send().await.expect("mint").json().await.expect("token");
    let token = minted["token"].as_str().expect("a token").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = flotilla_agent::session::RegistrationConfig {
        cluster: "web".into(),
        data_dir: dir.path().to_path_buf(),
        availability_zone: "us-east-1a".into(),
        instance_type: "flotilla.test".into(),
        attributes: vec![],
        cpu: Some(1024),
        memory: Some(1024),
        memory_reserved_mib: 0,
        network_modes: vec!["bridge".into()],
        agent_version: "test".into(),
        docker_version: "test".into(),
        state_file: "agent.json".into(),
        ec2_instance_id: None,
        gpus: Vec::new(),
    };
    let bare = flotilla_agent::session::ApiClient::new(&s.base, REGION, Credentials::new("", "")).expect("client");
    flotilla_agent::session::join::enroll(&bare, &reg, Some(&token)).await.expect("joined");
    let saved: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(flotilla_agent::session::join::CREDENTIALS_FILE)).expect("credentials file"),
    )
    .expect("credentials JSON");
    let agent = Credentials::new(
        saved["accessKeyId"].as_str().expect("key id"),
        saved["secretAccessKey"].as_str().expect("secret"),
    );
    for path in ["/", "/clusters/web", "/task-definitions"] {
        let (status, body) = s.get_as(path, Some(&agent)).await;
        assert!((400..500).contains(&status), "{path}: {status} {body}");
        assert!(body.contains("AccessDeniedException"), "{path}: {body}");
        assert!(!body.contains("<h1>"), "{path}: {body}");
    }
    s.stop().await;
}
