//! Retiring services: a DRAINING service (DeleteService) becomes INACTIVE once its tasks have all
//! stopped.

use flotilla_model::Service;
use flotilla_store::{Compare, Op, Txn};

use crate::context::Ctx;
use crate::error::ApiResult;
use crate::state::cache::{range_prefix, Entry};
use crate::state::codec::encode;
use crate::state::keys;

/// Moves DRAINING services whose tasks have all stopped to INACTIVE. Level-triggered: it looks
/// at the whole picture each pass, so a missed pass costs nothing.
pub async fn finish_draining(ctx: &Ctx) -> ApiResult<usize> {
    let candidates: Vec<(String, Entry<Service>)> = {
        let ix = ctx.cache.read();
        range_prefix(&ix.services, keys::SERVICE)
            .filter(|(_, e)| e.value.status.as_deref() == Some("DRAINING"))
            .filter(|(k, e)| {
                let cluster = k[keys::SERVICE.len()..].split('/').next().unwrap_or("");
                let group = format!("service:{}", e.value.service_name.as_deref().unwrap_or(""));
                ix.task_index.in_group(cluster, &group).all(|t| ix.tasks.get(t).is_none_or(|t| t.value.is_stopped()))
            })
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    };
    let mut done = 0;
    for (key, entry) in candidates {
        let mut svc = (*entry.value).clone();
        svc.status = Some("INACTIVE".into());
        svc.running_count = Some(0);
        svc.pending_count = Some(0);
        let txn = Txn::new().when(Compare::unchanged(&key, entry.revision)).then(Op::put(&key, encode(&svc)));
        if ctx.commit(txn).await?.is_some() {
            done += 1;
        }
    }
    Ok(done)
}
