//! What the engine gives the task metadata endpoint: each container created with its own token
//! in its environment and labels, and the task's record for the endpoint to read.

use super::*;
use crate::metadata::{MetadataEndpoint, TaskBook, TOKEN_LABEL};

#[tokio::test(start_paused = true)]
async fn containers_learn_their_own_endpoint_and_the_record_follows_the_task() {
    let mut h = Harness::with(|c| {
        c.metadata = Some(MetadataEndpoint { base_url: "http://172.17.0.1:51679".into() });
    });
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![container("web"), container("side")])).unwrap();
    h.status(&task, "RUNNING").await;
    let containers = h.fake.task_containers(&task);
    let mut tokens = Vec::new();
    for c in containers.values() {
        let token = c.spec.labels[TOKEN_LABEL].clone();
        assert!(c.spec.env.contains(&format!("ECS_CONTAINER_METADATA_URI_V4=http://172.17.0.1:51679/v4/{token}")));
        tokens.push(token);
    }
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1]);
    let rec = TaskBook::task(&h.engine, &task).expect("the record of a running task");
    assert_eq!(rec.known.as_str(), "RUNNING");
    assert!(rec.containers.iter().all(|c| c.runtime_id.is_some()));
    h.engine.apply(stopped(assignment("t1", vec![container("web"), container("side")]))).unwrap();
    h.status(&task, "STOPPED").await;
    assert_eq!(TaskBook::task(&h.engine, &task).map(|r| r.known.as_str()), Some("STOPPED"));
}

#[tokio::test(start_paused = true)]
async fn without_an_endpoint_containers_get_no_metadata_variables() {
    let mut h = Harness::new();
    let task = arn("t1");
    h.engine.apply(assignment("t1", vec![container("web")])).unwrap();
    h.status(&task, "RUNNING").await;
    let c = &h.fake.task_containers(&task)["web"];
    assert!(!c.spec.labels.contains_key(TOKEN_LABEL));
    assert!(!c.spec.env.iter().any(|e| e.starts_with("ECS_CONTAINER_METADATA_URI")));
}
