//! Crash safety of the real binary: a stream of writes from concurrent clients, a SIGKILL in the
//! middle of it, a restart on the same data directory, and then every acknowledged write must be
//! there, and the store must be consistent (revisions contiguous per family, every record whole).

mod common;

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::types::ContainerDefinition;

const AKID: &str = "AKIDCRASHTEST";
const SECRET: &str = "crash-test-secret";

struct Server {
    child: Child,
    endpoint: String,
}

impl Server {
    fn start(dir: &std::path::Path) -> Server {
        let (child, endpoint) = common::start_printing_endpoint("server", dir, AKID, SECRET);
        Server { child, endpoint }
    }

    fn client(&self) -> aws_sdk_ecs::Client {
        common::client(&self.endpoint, AKID, SECRET)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn container() -> ContainerDefinition {
    ContainerDefinition::builder().name("app").image("busybox").memory(64).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path());
    let client = server.client();

    // Acknowledged writes: (family, revision) of task definitions and names of clusters.
    let acked_defs = Arc::new(Mutex::new(Vec::<(String, i32)>::new()));
    let acked_clusters = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, defs, clusters, stop) = (client.clone(), acked_defs.clone(), acked_clusters.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let family = format!("crash-{}", w % 4);
            let mut i = 0u32;
            // Bounded: the test kills the server long before this runs out.
            while !stop.load(Ordering::Relaxed) && i < 100_000 {
                i += 1;
                if i.is_multiple_of(5) {
                    let name = format!("c-{w}-{i}");
                    if client.create_cluster().cluster_name(&name).send().await.is_ok() {
                        clusters.lock().unwrap().push(name);
                    }
                } else {
                    let r = client
                        .register_task_definition()
                        .family(&family)
                        .container_definitions(container())
                        .send()
                        .await;
                    if let Ok(out) = r {
                        let rev = out.task_definition().map(|t| t.revision()).expect("revision");
                        defs.lock().unwrap().push((family.clone(), rev));
                    }
                }
            }
        }));
    }
    // Let a good number of writes be acknowledged, then kill without warning.
    for _ in 0..600 {
        if acked_defs.lock().unwrap().len() >= 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reap");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let defs = acked_defs.lock().unwrap().clone();
    let clusters = acked_clusters.lock().unwrap().clone();
    assert!(defs.len() >= 100, "too few writes were acknowledged before the kill: {}", defs.len());

    let server = Server::start(dir.path());
    let client = server.client();
    for (family, rev) in &defs {
        let td = client
            .describe_task_definition()
            .task_definition(format!("{family}:{rev}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledged {family}:{rev} is gone: {e:?}"));
        assert_eq!(td.task_definition().map(|t| t.revision()), Some(*rev));
    }
    for chunk in clusters.chunks(100) {
        let out = client.describe_clusters().set_clusters(Some(chunk.to_vec())).send().await.expect("describe");
        assert!(out.failures().is_empty(), "acknowledged clusters are gone: {:?}", out.failures());
        assert_eq!(out.clusters().len(), chunk.len());
    }
    // Consistency: each family's revisions are exactly 1..=n, each record whole and describable.
    for w in 0..4 {
        let family = format!("crash-{w}");
        let arns: Vec<String> = client
            .list_task_definitions()
            .family_prefix(&family)
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|r| r.expect("list"))
            .collect();
        let mut revs: Vec<i32> = arns.iter().map(|a| a.rsplit(':').next().unwrap().parse().unwrap()).collect();
        revs.sort();
        let expected: Vec<i32> = (1..=revs.len() as i32).collect();
        assert_eq!(revs, expected, "revisions of {family} are not contiguous");
        let acked_max = defs.iter().filter(|(f, _)| *f == family).map(|(_, r)| *r).max().unwrap_or(0);
        assert!(revs.len() as i32 >= acked_max);
    }
    // And the store takes new writes at the next revision.
    let out = client
        .register_task_definition()
        .family("crash-0")
        .container_definitions(container())
        .send()
        .await
        .expect("write after restart");
    let before = defs.iter().filter(|(f, _)| f == "crash-0").map(|(_, r)| *r).max().unwrap_or(0);
    assert!(out.task_definition().unwrap().revision() > before);
}
