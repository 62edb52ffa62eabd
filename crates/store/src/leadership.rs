//! Leadership: which of several servers sharing one store runs the loops that must run once
//! (the service controller, the reaper, managed scaling, health and registration loops).
//!
//! A server campaigns with [`crate::Store::campaign`] and gets a [`Leadership`] once it leads. The
//! term ends when the store says so ([`Leadership::lost`]): with etcd, when the lease behind the
//! leader key could not be kept alive. A leader that stalls (a long pause, a partition) may not
//! learn that its term ended before another server's begins, so every write a leader makes
//! carries the term's [`Leadership::fence`]: a compare on the leader key's create revision,
//! which fails once the key has been deleted and created again by the next leader.
//!
//! A store only one process can open (the embedded redb store) or that lives in one process (the
//! memory store) has nobody to elect: its campaign wins at once, for good, with no fence.

use tokio::sync::watch;

use crate::types::Compare;

/// The key that names the leader of `election` (its value is the leader's id).
pub fn leader_key(election: &str) -> String {
    format!("{LEADER_PREFIX}{election}")
}

/// Where leader keys live. The records of the control plane's own bookkeeping (leaders, live
/// servers) are all under `control/`.
pub const LEADER_PREFIX: &str = "control/leader/";

/// One term of leadership.
pub struct Leadership {
    fence: Option<Compare>,
    /// `true` once the term has ended.
    ended: watch::Receiver<bool>,
    /// Whatever keeps the term alive (a lease's keep-alive task); dropped, it resigns.
    _holder: Option<Box<dyn Send + Sync>>,
}

impl Leadership {
    /// A term that lasts as long as the process: the only process that can use the store leads.
    pub fn unopposed() -> Self {
        let (tx, ended) = watch::channel(false);
        // Kept alive inside the holder so the term never reads as ended.
        Leadership { fence: None, ended, _holder: Some(Box::new(tx)) }
    }

    /// A term fenced by `fence` that ends when `ended` turns `true` (or its sender is dropped);
    /// `holder` is dropped with the term.
    pub fn new(fence: Compare, ended: watch::Receiver<bool>, holder: impl Send + Sync + 'static) -> Self {
        Leadership { fence: Some(fence), ended, _holder: Some(Box::new(holder)) }
    }

    /// The compare every write made under this term must carry; `None` when nobody else can lead.
    pub fn fence(&self) -> Option<&Compare> {
        self.fence.as_ref()
    }

    /// Whether the term still holds, as far as this process knows.
    pub fn is_held(&self) -> bool {
        !*self.ended.borrow()
    }

    /// Resolves when the term ends.
    pub async fn lost(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|ended| *ended).await;
    }
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("fence", &self.fence).field("held", &self.is_held()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unopposed_term_never_ends_and_a_fenced_one_ends_when_told() {
        let forever = Leadership::unopposed();
        assert!(forever.is_held() && forever.fence().is_none());
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), forever.lost()).await.is_err());

        let (tx, rx) = watch::channel(false);
        let term = Leadership::new(Compare::created(leader_key("loops"), 7), rx, ());
        assert_eq!(term.fence(), Some(&Compare::created("control/leader/loops", 7)));
        assert!(term.is_held());
        tx.send_replace(true);
        term.lost().await;
        assert!(!term.is_held());

        let (tx, rx) = watch::channel(false);
        let term = Leadership::new(Compare::created("k", 1), rx, ());
        drop(tx);
        term.lost().await; // a dropped sender ends the term too
    }
}
