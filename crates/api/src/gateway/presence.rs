//! `agentConnected` on container instances: true while a session is up, false otherwise, with the
//! server that holds the session (`session_server`), so that a session that moved to another
//! server is never disconnected by the one it left.

use flotilla_store::{Compare, Op, Txn};

use crate::context::{Ctx, MAX_CAS_ATTEMPTS};
use crate::error::ApiResult;
use crate::servers::disconnect_at;
use crate::state::codec::encode;

/// Records that server `me` holds the instance's live session; does nothing if the record
/// already says so or is gone.
pub async fn claim(ctx: &Ctx, key: &str, me: &str) -> ApiResult<()> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(entry) = ctx.cache.read().instances.get(key).cloned() else { return Ok(()) };
        let rec = &entry.value;
        if rec.instance.agent_connected == Some(true) && rec.session_server.as_deref() == Some(me) {
            return Ok(());
        }
        let mut rec = (**rec).clone();
        rec.instance.agent_connected = Some(true);
        rec.session_server = Some(me.to_string());
        rec.instance.version = Some(rec.instance.version.unwrap_or(0) + 1);
        let txn = Txn::new().when(Compare::unchanged(key, entry.revision)).then(Op::put(key, encode(&rec)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(());
        }
    }
    Ok(())
}

/// Claims the instance again if a sweep disconnected it while server `me` still holds its session
/// (this server was judged dead: a long stall); leaves it alone if another server claimed it.
/// Says whether it claimed.
pub async fn reclaim_if_swept(ctx: &Ctx, key: &str, me: &str) -> ApiResult<bool> {
    let swept = ctx.cache.read().instances.get(key).is_some_and(|e| match e.value.session_server.as_deref() {
        None => true,
        Some(s) => s == me && e.value.instance.agent_connected != Some(true),
    });
    if swept {
        claim(ctx, key, me).await?;
    }
    Ok(swept)
}

/// Records that server `me`'s session of the instance ended: disconnected, unless the record names
/// another server (the agent moved there). Says whether it wrote.
pub async fn release(ctx: &Ctx, key: &str, me: &str) -> ApiResult<bool> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(entry) = ctx.cache.read().instances.get(key).cloned() else { return Ok(false) };
        if entry.value.session_server.as_deref() != Some(me) {
            return Ok(false);
        }
        if disconnect_at(ctx, key, entry.revision, &entry.value).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Records the address an instance's agent connected from (the loopback address as
/// `127.0.0.1`, whatever its form); does nothing if the record already says so or is gone.
pub async fn set_agent_address(ctx: &Ctx, key: &str, peer: std::net::IpAddr) -> ApiResult<()> {
    let address = match peer.to_canonical() {
        a if a.is_loopback() => "127.0.0.1".to_string(),
        a => a.to_string(),
    };
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(entry) = ctx.cache.read().instances.get(key).cloned() else { return Ok(()) };
        if entry.value.agent_address.as_deref() == Some(address.as_str()) {
            return Ok(());
        }
        let mut rec = (*entry.value).clone();
        rec.agent_address = Some(address.clone());
        let txn = Txn::new().when(Compare::unchanged(key, entry.revision)).then(Op::put(key, encode(&rec)));
        if ctx.commit(txn).await?.is_some() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{test_ctx, Clock};
    use crate::state::keys;
    use crate::state::records::InstanceRecord;

    #[tokio::test]
    async fn the_agent_address_is_written_on_change_and_loopback_reads_as_127_0_0_1() {
        let ctx = test_ctx(Clock::fixed(0)).await;
        let key = keys::instance("default", "abc");
        let rec = InstanceRecord { instance: Default::default(), agent_address: None, session_server: None };
        ctx.commit(Txn::new().then(Op::put(key.clone(), encode(&rec)))).await.unwrap();
        let read =
            || ctx.cache.read().instances.get(&key).map(|e| (e.value.agent_address.clone(), e.revision)).unwrap();
        set_agent_address(&ctx, &key, "::1".parse().unwrap()).await.unwrap();
        let (address, revision) = read();
        assert_eq!(address.as_deref(), Some("127.0.0.1"));
        set_agent_address(&ctx, &key, "127.0.0.1".parse().unwrap()).await.unwrap();
        assert_eq!(read().1, revision, "the same address is not written again");
        set_agent_address(&ctx, &key, "::ffff:10.1.2.3".parse().unwrap()).await.unwrap();
        assert_eq!(read().0.as_deref(), Some("10.1.2.3"));
    }
}
