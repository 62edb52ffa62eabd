//! Tasks: DescribeTasks, ListTasks (every filter, through the cache's indexes) and StopTask.
//! Tasks are created by RunTask and StartTask, which arrive with the scheduler and the agent;
//! this module owns the task record's lifecycle rules they share.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use flotilla_model::arn::short_id;
use flotilla_model::{
    DescribeTasksRequest, ListTasksRequest, ListTasksResponse, StopTaskRequest, StopTaskResponse, Task,
};

use super::{active_cluster, check_batch, missing};
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::pagination::page;
use crate::state::cache::Indexes;
use crate::state::keys;
use crate::state::tasks::{scope_of, TaskSummary};

/// The task ID a `task` member names: an ID, or an ARN of this cluster.
pub fn task_id<'a>(ctx: &Ctx, cluster: &str, given: &'a str) -> Option<&'a str> {
    super::id_in_cluster(ctx, cluster, given, super::Scoped::Task)
}

fn present(t: &Task, with_tags: bool) -> Task {
    let mut t = t.clone();
    if !with_tags {
        t.tags = None;
    } else {
        t.tags.get_or_insert_with(Vec::new);
    }
    t
}

/// Newly launched tasks as RunTask and StartTask answer them: with their tags, `[]` when they
/// have none, as DescribeTasks shows them with `include: TAGS`.
pub fn shown(tasks: Vec<Task>) -> Vec<Task> {
    let with_tags = |mut t: Task| {
        t.tags.get_or_insert_with(Vec::new);
        t
    };
    tasks.into_iter().map(with_tags).collect()
}

/// DescribeTasks' answer, written directly: each task's cached JSON is copied in as it is.
pub async fn describe(ctx: &Ctx, req: DescribeTasksRequest) -> ApiResult<Vec<u8>> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let list = req.tasks.unwrap_or_default();
    check_batch("tasks", list.len(), 100)?;
    let with_tags = req.include.unwrap_or_default().iter().any(|i| i == "TAGS");
    let mut out = Vec::with_capacity(64 + list.len() * 1536);
    out.extend_from_slice(b"{\"tasks\":");
    let mut tasks = 0usize;
    let mut failures = Vec::new();
    let ix = ctx.cache.read();
    let mut key = String::with_capacity(keys::TASK.len() + cluster.len() + 40);
    for given in list {
        let found = task_id(ctx, &cluster, &given).and_then(|id| {
            key.clear();
            key.push_str(keys::TASK);
            key.push_str(&cluster);
            key.push('/');
            key.push_str(id);
            ix.tasks.get(key.as_str())
        });
        match found {
            Some(e) => {
                out.push(if tasks == 0 { b'[' } else { b',' });
                e.value.write_json(&mut out, with_tags);
                tasks += 1;
            }
            None => {
                failures.push(missing(if given.starts_with("arn:") { given } else { ctx.arns.task(&cluster, &given) }))
            }
        }
    }
    if tasks == 0 {
        out.push(b'[');
    }
    out.extend_from_slice(b"],\"failures\":");
    serde_json::to_writer(&mut out, &failures).map_err(|e| ApiError::server(e.to_string()))?;
    out.push(b'}');
    Ok(out)
}

/// The filters of one ListTasks call, resolved.
struct TaskFilter {
    cluster: Arc<str>,
    desired: Arc<str>,
    instance: Option<Arc<str>>,
    family: Option<Arc<str>>,
    started_by: Option<Arc<str>>,
    group: Option<Arc<str>>,
    launch_type: Option<String>,
}

impl TaskFilter {
    fn matches(&self, t: &TaskSummary) -> bool {
        fn eq(want: &Option<Arc<str>>, have: &Option<Arc<str>>) -> bool {
            want.as_deref().is_none_or(|w| have.as_deref() == Some(w))
        }
        *t.desired == *self.desired
            && *t.cluster == *self.cluster
            && eq(&self.instance, &t.instance)
            && eq(&self.family, &t.family)
            && eq(&self.started_by, &t.started_by)
            && eq(&self.group, &t.group)
            && self.launch_type.as_deref().is_none_or(|l| t.launch_type.as_deref() == Some(l))
    }

    /// The smallest index set that covers every match, and whether every task in it matches
    /// (then no task needs looking at).
    fn candidates<'a>(&self, ix: &'a Indexes) -> Option<(&'a BTreeSet<Arc<str>>, bool)> {
        let t = &ix.task_index;
        let scope: Arc<str> = scope_of(&self.cluster, &self.desired).into();
        let mut sets: Vec<Option<&'a BTreeSet<Arc<str>>>> = Vec::new();
        if let Some(i) = &self.instance {
            sets.push(t.by_instance.get(i));
        }
        for (index, value) in
            [(&t.by_family, &self.family), (&t.by_started_by, &self.started_by), (&t.by_group, &self.group)]
        {
            if let Some(v) = value {
                sets.push(index.get(&(scope.clone(), v.clone())));
            }
        }
        // The instance index spans desired statuses, so it alone does not settle a match.
        let value_filters = sets.len() - usize::from(self.instance.is_some());
        let exact = self.launch_type.is_none() && self.instance.is_none() && value_filters <= 1;
        if sets.is_empty() {
            return t.by_cluster_desired.get(&(self.cluster.clone(), self.desired.clone())).map(|s| (s, exact));
        }
        let mut best: Option<&'a BTreeSet<Arc<str>>> = None;
        for set in sets {
            let set = set?;
            if best.is_none_or(|b| set.len() < b.len()) {
                best = Some(set);
            }
        }
        best.map(|b| (b, exact))
    }
}

pub async fn list(ctx: &Ctx, req: ListTasksRequest) -> ApiResult<ListTasksResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let desired = req.desired_status.clone().unwrap_or_else(|| "RUNNING".into());
    if req.daemon_name.is_some() {
        return Err(ApiError::unsupported("Daemons are not supported by Flotilla yet."));
    }
    let instance = match req.container_instance.as_deref() {
        None => None,
        Some(given) => {
            let id = crate::domain::lookup::instance_id(ctx, &cluster, given).ok_or_else(|| {
                ApiError::invalid_parameter(format!(
                    "containerInstance '{given}' is not a valid container instance ID or ARN."
                ))
            })?;
            Some(Arc::<str>::from(ctx.arns.container_instance(&cluster, id)))
        }
    };
    let group = match req.service_name.as_deref() {
        None => None,
        Some(name) => {
            let name = short_id(name);
            if !ctx.cache.read().services.contains_key(&keys::service(&cluster, name)) {
                return Err(ApiError::service_not_found());
            }
            Some(Arc::<str>::from(format!("service:{name}")))
        }
    };
    let filter = TaskFilter {
        cluster: cluster.as_str().into(),
        desired: desired.as_str().into(),
        instance,
        family: req.family.as_deref().map(Arc::from),
        started_by: req.started_by.as_deref().map(Arc::from),
        group,
        launch_type: req.launch_type.clone(),
    };
    let scope = format!(
        "ListTasks\0{cluster}\0{desired}\0{}\0{}\0{}\0{}\0{}",
        filter.instance.as_deref().unwrap_or(""),
        filter.family.as_deref().unwrap_or(""),
        filter.started_by.as_deref().unwrap_or(""),
        filter.group.as_deref().unwrap_or(""),
        filter.launch_type.as_deref().unwrap_or(""),
    );
    let pr = ctx.pager.request(&scope, req.next_token.as_deref(), req.max_results, 100, 100)?;
    let ix = ctx.cache.read();
    let Some((candidates, exact)) = filter.candidates(&ix) else {
        return Ok(ListTasksResponse { task_arns: Some(Vec::new()), next_token: None });
    };
    let start = match &pr.after {
        Some(a) => Bound::Excluded(a.as_str()),
        None => Bound::Unbounded,
    };
    let matching = candidates
        .range::<str, _>((start, Bound::Unbounded))
        .filter(|k| exact || ix.tasks.get(*k).is_some_and(|e| filter.matches(&e.value.summary)));
    let (items, next) = page(&ctx.pager, &scope, &pr, matching, |k| k);
    // One ARN prefix per request; each ARN is that prefix and the task ID from the key.
    let prefix = ctx.arns.task(&cluster, "");
    let arn_of = |k: &Arc<str>| {
        let id = k.rsplit('/').next().unwrap_or_default();
        let mut arn = String::with_capacity(prefix.len() + id.len());
        arn.push_str(&prefix);
        arn.push_str(id);
        arn
    };
    Ok(ListTasksResponse { task_arns: Some(items.into_iter().map(arn_of).collect()), next_token: next })
}

pub async fn stop(ctx: &Ctx, req: StopTaskRequest) -> ApiResult<StopTaskResponse> {
    let (cluster, _) = active_cluster(ctx, req.cluster.as_deref())?;
    let given = req.task.unwrap_or_default();
    if let Some(r) = &req.reason {
        if r.chars().count() > 1024 {
            return Err(ApiError::invalid_parameter("reason can be at most 1024 characters long."));
        }
    }
    let not_found = || ApiError::invalid_parameter("The referenced task was not found.");
    let id = task_id(ctx, &cluster, &given).ok_or_else(not_found)?;
    let key = keys::task(&cluster, id);
    let reason = req.reason.clone().unwrap_or_else(|| "Task stopped by user".into());
    let (task, _) = stop_by_key(ctx, &key, "UserInitiated", &reason).await?.ok_or_else(not_found)?;
    Ok(StopTaskResponse { task: Some(present(&task, false)) })
}

pub use crate::domain::stop::{request_stop, stop_by_key};
