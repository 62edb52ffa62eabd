//! RunTask's `clientToken`: the answer it remembers, written in the same transaction as the tasks
//! it answers (see `commit`), and read back for a retry of the same request.

use flotilla_model::arn::{short_id, Resource};
use flotilla_model::Failure;
use serde::{Deserialize, Serialize};

use super::Launched;
use crate::context::Ctx;
use crate::error::ApiResult;
use crate::idempotency;
use crate::state::keys;

/// The operation the token belongs to, in its idempotency key.
const OPERATION: &str = "RunTask";

/// A RunTask's clientToken and the hash of the request that carried it.
#[derive(Debug, Clone, Copy)]
pub struct Token<'a> {
    pub token: &'a str,
    pub hash: &'a str,
}

/// What a clientToken remembers of RunTask's answer: the tasks by ARN (a retry shows them as they
/// are now, read from the cache) and the failures. Ten ARNs rather than ten whole tasks keep the
/// record small: the SDKs send a fresh token with every RunTask, so there is one per request.
#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    #[serde(rename = "taskArns")]
    task_arns: Vec<String>,
    failures: Vec<Failure>,
}

/// The earlier answer for this token, if the same request already succeeded.
pub fn replay(ctx: &Ctx, token: Token<'_>) -> ApiResult<Option<Launched>> {
    let Some(r) = idempotency::replay::<Remembered>(ctx, OPERATION, token.token, token.hash)? else {
        return Ok(None);
    };
    let ix = ctx.cache.read();
    let mut tasks = Vec::with_capacity(r.task_arns.len());
    let mut failures = r.failures;
    for arn in r.task_arns {
        let key = match ctx.arns.parse(&arn) {
            Ok(Resource::Task { cluster: Some(c), id }) => keys::task(&c, short_id(&id)),
            _ => String::new(),
        };
        match ix.tasks.get(key.as_str()) {
            Some(e) => tasks.push(e.value.task()),
            None => failures.push(Failure { arn: Some(arn), reason: Some("MISSING".into()), detail: None }),
        }
    }
    Ok(Some(Launched { tasks, failures }))
}

/// The compare and put that remember this answer, for the launch's transaction.
pub fn remember(
    ctx: &Ctx,
    token: Token<'_>,
    task_arns: Vec<String>,
    failures: &[Failure],
) -> (flotilla_store::Compare, flotilla_store::Op) {
    let remembered = Remembered { task_arns, failures: failures.to_vec() };
    idempotency::remember(ctx, OPERATION, token.token, token.hash, &remembered)
}
