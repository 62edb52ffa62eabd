//! Scaling activities as DescribeScalingActivities shows them: one per launch and one per
//! termination, written under the group with a time-ordered key.

use flotilla_api::{ApiResult, Ctx};
use flotilla_hosts::Activity;
use flotilla_store::{Compare, Op, Txn};

/// A new activity's key and record.
pub fn new(group: &str, description: String, cause: String, now_ms: i64) -> (String, Activity) {
    Activity::start(group, description, cause, now_ms)
}

/// The put of a new activity (its key is fresh: it must not exist).
pub fn create_ops(txn: Txn, key: &str, activity: &Activity) -> Txn {
    txn.when(Compare::absent(key)).then(Op::put(key, serde_json::to_vec(activity).unwrap_or_default()))
}

/// Marks the activity under `key` finished: `Successful`, or `Failed` with `message`.
pub async fn finish(ctx: &Ctx, key: &str, mut activity: Activity, failure: Option<String>) -> ApiResult<()> {
    activity.ended_at_ms = Some(ctx.clock.now_ms());
    activity.progress = 100;
    activity.status_code = if failure.is_some() { "Failed".into() } else { "Successful".into() };
    activity.status_message = failure;
    // Only this writer changes an activity in progress; the compare keeps a group deleted
    // meanwhile (and its activities with it) from getting one back.
    let Some(current) = ctx.store.get(key).await? else { return Ok(()) };
    let txn = Txn::new()
        .when(Compare::unchanged(key, current.mod_revision))
        .then(Op::put(key, serde_json::to_vec(&activity).unwrap_or_default()));
    ctx.commit(txn).await?;
    Ok(())
}

/// Writes an activity that is already over.
pub async fn record(ctx: &Ctx, mut activity: Activity, key: &str, failure: Option<String>) -> ApiResult<()> {
    activity.ended_at_ms = Some(ctx.clock.now_ms());
    activity.progress = 100;
    activity.status_code = if failure.is_some() { "Failed".into() } else { "Successful".into() };
    activity.status_message = failure;
    ctx.commit(create_ops(Txn::new(), key, &activity)).await?;
    Ok(())
}

/// `2026-12-06T08:00:00Z` for Unix milliseconds, as activity causes quote times.
pub fn rfc3339(ms: i64) -> String {
    flotilla_model::timestamp::rfc3339_seconds(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_544_000_000), "2026-12-06T08:00:00Z");
    }

    #[test]
    fn keys_follow_time() {
        let (a, _) = new("g", "d".into(), "c".into(), 5);
        let (b, _) = new("g", "d".into(), "c".into(), 6);
        assert!(a < b, "{a} {b}");
    }
}
