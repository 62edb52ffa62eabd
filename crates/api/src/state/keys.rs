//! The store's key layout. One prefix per record kind, the cluster next, so that a prefix listing
//! yields one cluster's records; revisions are zero-padded so that key order is numeric order.
//! Keys are part of the stored format: changing one needs a migration.

pub const CLUSTER: &str = "cluster/";
pub const TASK_DEFINITION: &str = "taskdef/";
pub const INSTANCE: &str = "instance/";
pub const TASK: &str = "task/";
pub const SERVICE: &str = "service/";
pub const IDEMPOTENCY: &str = "token/";
pub const ACCOUNT_SETTING: &str = "account/";
/// Per container instance, a counter that every placement on the instance bumps (see
/// `domain::launch::guard_instance`).
pub const PLACEMENT: &str = "placement/";
/// Join tokens and agents' keys (`crate::identity`), read through the store, not the cache.
pub const IDENTITY: &str = "identity/";
/// Capacity providers by name (account-wide, as ECS keeps them).
pub const CAPACITY_PROVIDER: &str = "capacityprovider/";

/// The control plane's own bookkeeping (the leader keys, the live servers), read through the
/// store.
pub const CONTROL: &str = "control/";

/// SSM Parameter Store's and Secrets Manager's records (`flotilla-secrets`), read through the
/// store so that no secret sits in the cache's memory.
pub const SECRETS: &[&str] = &["ssm/", "secretsmanager/"];
/// CloudWatch Logs' groups, streams and event batches (`flotilla-cwlogs`), read through the store:
/// event batches are far too many and too large to hold in memory.
pub const LOGS: &str = "logs/";

/// Whether the cache skips `key`: identity and control records, read through the store, and the
/// records of the EC2 and Auto Scaling services (`flotilla_hosts::keys::ROOTS`), which keep their
/// own.
pub fn uncached(key: &str) -> bool {
    key.starts_with(IDENTITY)
        || key.starts_with(CONTROL)
        || key.starts_with(LOGS)
        || flotilla_hosts::keys::ROOTS.iter().any(|r| key.starts_with(r))
        || flotilla_endpoints::keys::ROOTS.iter().any(|r| key.starts_with(r))
        || SECRETS.iter().any(|r| key.starts_with(r))
}

pub fn cluster(name: &str) -> String {
    format!("{CLUSTER}{name}")
}
/// Separates a family from its revision in task definition keys. It sorts below every character
/// a family may hold (letters, digits, `-`, `_`), so key order is family order, then revision
/// order, as ListTaskDefinitions must list them.
pub const REVISION_SEPARATOR: char = '!';

pub fn task_definition(family: &str, revision: u32) -> String {
    format!("{TASK_DEFINITION}{family}{REVISION_SEPARATOR}{revision:010}")
}

/// The prefix of every revision of one family.
pub fn task_definition_family(family: &str) -> String {
    format!("{TASK_DEFINITION}{family}{REVISION_SEPARATOR}")
}
pub fn instance(cluster: &str, id: &str) -> String {
    format!("{INSTANCE}{cluster}/{id}")
}
/// The placement counter of the instance under `instance_key`.
pub fn placement_of(instance_key: &str) -> String {
    format!("{PLACEMENT}{}", instance_key.strip_prefix(INSTANCE).unwrap_or(instance_key))
}
/// A subnet's address counter, bumped by every launch that hands out one of its addresses (see
/// `domain::subnets`). It lives among the placement counters, under a cluster part no cluster
/// name can have.
pub fn subnet_guard(subnet_id: &str) -> String {
    format!("{PLACEMENT}~subnet/{subnet_id}")
}
pub fn task(cluster: &str, id: &str) -> String {
    format!("{TASK}{cluster}/{id}")
}
pub fn service(cluster: &str, name: &str) -> String {
    format!("{SERVICE}{cluster}/{name}")
}
pub fn idempotency(operation: &str, token: &str) -> String {
    format!("{IDEMPOTENCY}{operation}/{token}")
}
pub fn account_setting(name: &str) -> String {
    format!("{ACCOUNT_SETTING}{name}")
}
pub fn capacity_provider(name: &str) -> String {
    format!("{CAPACITY_PROVIDER}{name}")
}
