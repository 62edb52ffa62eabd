//! What each benchmark row sends: the operation (`X-Amz-Target`) and a fresh JSON body per
//! request, chosen by a per-connection pseudo-random sequence so that reads hit tasks all over
//! the seeded fleet rather than one hot record.

use flotilla_model::arn::ArnScope;

use crate::seed;

/// The `X-Amz-Target` prefix of every ECS operation.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

/// One kind of request a row repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// The floor: DescribeTasks-shaped requests to the bare server, which does nothing with them.
    Floor,
    /// DescribeTasks naming `per_request` random seeded tasks by ARN.
    Describe { per_request: usize },
    /// ListTasks filtered by family and desiredStatus RUNNING, first page of 100.
    ListByFamily,
    /// ListTasks filtered by startedBy, first page of 100.
    ListByStartedBy,
    /// ListTasks of the default cluster's RUNNING tasks of `runtask-bench`, first page of 100 (the
    /// tasks a RunTask load placed, not seeded ones).
    ListRunning,
    /// RegisterTaskDefinition: one durable write each, one family per connection so that
    /// connections never race for the same revision.
    Register,
}

impl Workload {
    pub fn operation(&self) -> &'static str {
        match self {
            Workload::Floor | Workload::Describe { .. } => "DescribeTasks",
            Workload::ListByFamily | Workload::ListByStartedBy | Workload::ListRunning => "ListTasks",
            Workload::Register => "RegisterTaskDefinition",
        }
    }

    /// The row's name in the table.
    pub fn label(&self) -> String {
        match self {
            Workload::Floor => "floor: bare HTTP, fixed body".into(),
            Workload::Describe { per_request: 1 } => "DescribeTasks, 1 task".into(),
            Workload::Describe { per_request } => format!("DescribeTasks, {per_request} tasks"),
            Workload::ListByFamily => "ListTasks family+desiredStatus".into(),
            Workload::ListByStartedBy => "ListTasks startedBy".into(),
            Workload::ListRunning => "ListTasks family RUNNING".into(),
            Workload::Register => "RegisterTaskDefinition (durable)".into(),
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(self, Workload::Register)
    }

    /// The body of the next request on connection `conn`, drawing from `rng`; `tasks` is how
    /// many tasks were seeded.
    pub fn body(&self, arns: &ArnScope, rng: &mut Rng, conn: usize, tasks: u64) -> Vec<u8> {
        let cluster = seed::CLUSTER;
        let value = match self {
            // The same request as the 1-task DescribeTasks row, so the client's work is the same.
            Workload::Floor => describe_body(arns, rng, 1, tasks),
            Workload::Describe { per_request } => describe_body(arns, rng, *per_request, tasks),
            Workload::ListByFamily => serde_json::json!({
                "cluster": cluster,
                "family": seed::family(rng.below(seed::FAMILIES)),
                "desiredStatus": "RUNNING",
                "maxResults": 100,
            }),
            Workload::ListByStartedBy => serde_json::json!({
                "cluster": cluster,
                "startedBy": seed::started_by(rng.below(seed::STARTERS)),
                "maxResults": 100,
            }),
            Workload::ListRunning => serde_json::json!({
                "family": crate::runtask::FAMILY,
                "desiredStatus": "RUNNING",
                "maxResults": 100,
            }),
            Workload::Register => serde_json::json!({
                "family": format!("bench-write-{conn}"),
                "containerDefinitions": [{
                    "name": "app",
                    "image": "registry.local/bench/writer:1.0",
                    "cpu": 128,
                    "memory": 256,
                    "essential": true,
                    "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
                    "environment": [{"name": "SEQ", "value": rng.next_u64().to_string()}],
                }],
            }),
        };
        serde_json::to_vec(&value).expect("json values always serialize")
    }
}

fn describe_body(arns: &ArnScope, rng: &mut Rng, n: usize, tasks: u64) -> serde_json::Value {
    let names: Vec<String> = (0..n).map(|_| seed::task_arn(arns, rng.below(tasks.max(1)))).collect();
    serde_json::json!({ "cluster": seed::CLUSTER, "tasks": names })
}

/// A small deterministic generator (SplitMix64 over a counter).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        seed::mix(self.0)
    }

    /// A value in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_requests() {
        let arns = seed::arns();
        let mut rng = Rng::new(1);
        let b: serde_json::Value =
            serde_json::from_slice(&Workload::Describe { per_request: 10 }.body(&arns, &mut rng, 0, 100)).unwrap();
        assert_eq!(b["tasks"].as_array().unwrap().len(), 10);
        assert!(b["tasks"][0].as_str().unwrap().starts_with("arn:aws:ecs:us-east-1:000000000000:task/default/"));
        let b: serde_json::Value = serde_json::from_slice(&Workload::Register.body(&arns, &mut rng, 3, 100)).unwrap();
        assert_eq!(b["family"], "bench-write-3");
        assert_eq!(Workload::ListByFamily.operation(), "ListTasks");
    }
}
