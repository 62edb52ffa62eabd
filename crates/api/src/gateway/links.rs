//! The live agent sessions, by container instance: a channel into each session loop, so that other
//! parts of the control plane (reading a task's logs) can send an agent a message.
//!
//! A session attaches when it starts and detaches when it ends; each attachment has its own id, so
//! an old session that ends after a newer one of the same instance took over leaves the newer link
//! alone. Messages queue in a bounded channel that the session loop drains into its socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use flotilla_protocol::ServerMessage;
use tokio::sync::mpsc;

/// How many messages may wait for one session's socket.
const QUEUE: usize = 256;

struct Link {
    id: u64,
    tx: mpsc::Sender<ServerMessage>,
}

/// A way into one session loop.
#[derive(Clone)]
pub struct SessionLink {
    /// Which attachment this is (see [`Links::attach`]).
    pub id: u64,
    pub tx: mpsc::Sender<ServerMessage>,
}

/// The live sessions.
#[derive(Default)]
pub struct Links {
    by_instance: Mutex<HashMap<String, Link>>,
    next_id: AtomicU64,
}

impl Links {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Link>> {
        self.by_instance.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new session of `instance_arn`, replacing any older one; the session loop sends
    /// whatever arrives on the receiver.
    pub fn attach(&self, instance_arn: &str) -> (u64, mpsc::Receiver<ServerMessage>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock().insert(instance_arn.to_string(), Link { id, tx });
        (id, rx)
    }

    /// Removes the session `id` of `instance_arn`, if it is still the current one.
    pub fn detach(&self, instance_arn: &str, id: u64) -> bool {
        let mut links = self.lock();
        if links.get(instance_arn).is_some_and(|l| l.id == id) {
            links.remove(instance_arn);
            true
        } else {
            false
        }
    }

    /// How many agent sessions this server holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current session of `instance_arn`, if its agent is connected.
    pub fn get(&self, instance_arn: &str) -> Option<SessionLink> {
        self.lock().get(instance_arn).filter(|l| !l.tx.is_closed()).map(|l| SessionLink { id: l.id, tx: l.tx.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_session_replaces_the_link_and_the_old_one_cannot_remove_it() {
        let links = Links::default();
        assert!(links.get("i1").is_none());
        let (old, _old_rx) = links.attach("i1");
        let (new, mut new_rx) = links.attach("i1");
        assert_ne!(old, new);
        let link = links.get("i1").expect("linked");
        assert_eq!(link.id, new);
        link.tx.send(ServerMessage::LogsCancel { request_id: "r".into() }).await.unwrap();
        assert_eq!(new_rx.recv().await, Some(ServerMessage::LogsCancel { request_id: "r".into() }));
        assert!(!links.detach("i1", old), "the old session leaves the new link alone");
        assert!(links.get("i1").is_some());
        assert!(links.detach("i1", new));
        assert!(links.get("i1").is_none());
    }

    #[tokio::test]
    async fn a_session_whose_loop_is_gone_is_not_offered() {
        let links = Links::default();
        let (_, rx) = links.attach("i1");
        drop(rx);
        assert!(links.get("i1").is_none());
    }
}
