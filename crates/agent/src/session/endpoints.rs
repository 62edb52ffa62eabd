//! The control plane's servers as a client sees them (`--server URL1,URL2,...`): every server
//! serves the whole API, so a client talks to one of them (the current one) and, when that one
//! cannot be reached, moves to the next in the list and asks again at once. Only a full round of
//! failures (every server tried in turn) calls for a wait, which stays the caller's to choose.
//!
//! [`Endpoints`] is shared by the clones of one client: an agent's API calls and its session
//! move together. Each client starts at a random place in the list, so that a fleet of agents
//! spreads over the servers instead of piling onto the first. With one URL nothing moves: a
//! failure is a full round, and the caller backs off as it always did.
//!
//! The agent (`ApiClient`, the session), the load balancer node's control plane client and the
//! user commands (`flotilla logs`, `token`, `spot`) all rotate through this one type.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointsError {
    #[error("no server URL given")]
    Empty,
    #[error("the server list {list:?} has an empty entry (number {position})")]
    EmptyEntry { list: String, position: usize },
    #[error("{url:?} is not a server URL: {reason}")]
    BadUrl { url: String, reason: String },
}

/// The servers of one control plane and which of them a client is on.
#[derive(Clone)]
pub struct Endpoints {
    urls: Arc<[Arc<str>]>,
    /// Counts moves; the current server is `urls[position % len]`. Never wrapping back to a
    /// value another caller still holds keeps two callers that failed on the same server from
    /// moving twice.
    position: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").field("urls", &self.urls).field("current", &self.current().url).finish()
    }
}

impl std::fmt::Display for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.urls.join(","))
    }
}

/// One server to try: its URL and where the rotation stood when it was picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    position: usize,
    pub url: Arc<str>,
}

/// Checks one server URL: `http://` or `https://` with a host; the trailing `/` dropped.
pub fn parse_url(url: &str) -> Result<String, EndpointsError> {
    let url = url.trim();
    let bad = |reason: &str| EndpointsError::BadUrl { url: url.to_string(), reason: reason.to_string() };
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) | None => return Err(bad("it must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    if uri.query().is_some() {
        return Err(bad("a server URL takes no query"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Checks a comma-separated list of server URLs, naming the entry that is wrong; the list as
/// checked, joined again with commas (for a flag's value parser).
pub fn parse_list(list: &str) -> Result<String, EndpointsError> {
    Endpoints::parse(list).map(|e| e.to_string())
}

impl Endpoints {
    /// `URL1,URL2,...` (one URL alone is a list of one), starting at a random server.
    pub fn parse(list: &str) -> Result<Endpoints, EndpointsError> {
        if list.trim().is_empty() {
            return Err(EndpointsError::Empty);
        }
        let mut urls = Vec::new();
        for (i, entry) in list.split(',').enumerate() {
            if entry.trim().is_empty() {
                return Err(EndpointsError::EmptyEntry { list: list.to_string(), position: i + 1 });
            }
            urls.push(parse_url(entry)?);
        }
        Endpoints::new(urls)
    }

    /// These servers, each checked, starting at a random one.
    pub fn new<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> Result<Endpoints, EndpointsError> {
        let urls: Vec<Arc<str>> =
            urls.into_iter().map(|u| parse_url(u.as_ref()).map(Arc::from)).collect::<Result<_, _>>()?;
        if urls.is_empty() {
            return Err(EndpointsError::Empty);
        }
        let start = rand::random::<u32>() as usize % urls.len();
        Ok(Endpoints { urls: urls.into(), position: Arc::new(AtomicUsize::new(start)) })
    }

    /// The same servers starting at the `index`th (modulo their number): the first for a
    /// command that asks "the first server that answers", a chosen one for tests.
    pub fn starting_at(self, index: usize) -> Endpoints {
        Endpoints { position: Arc::new(AtomicUsize::new(index % self.urls.len())), urls: self.urls }
    }

    /// The same servers with a rotation of its own, starting at a random one: for another
    /// client (each hollow agent of a fleet) that should not move with this one.
    pub fn detached(&self) -> Endpoints {
        let start = rand::random::<u32>() as usize % self.urls.len();
        Endpoints { urls: self.urls.clone(), position: Arc::new(AtomicUsize::new(start)) }
    }

    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.urls.iter().map(|u| &**u)
    }

    /// How many servers there are (at least one).
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Never true: a list holds at least one server.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The first server of the list as given (what a route to the control plane is probed to).
    pub fn first(&self) -> &str {
        &self.urls[0]
    }

    /// The server to use now.
    pub fn current(&self) -> Attempt {
        let position = self.position.load(Ordering::Acquire);
        Attempt { position, url: self.urls[position % self.urls.len()].clone() }
    }

    /// `attempt`'s server could not be reached: move on to the next, unless another caller has
    /// moved on already.
    pub fn failed(&self, attempt: &Attempt) {
        let _ = self.position.compare_exchange(
            attempt.position,
            attempt.position.wrapping_add(1),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// A round of tries over these servers, from the current one.
    pub fn round(&self) -> Round {
        Round { endpoints: self.clone(), failures: 0 }
    }

    /// Runs `op` against the current server; when it fails in a way `fail_over` says another
    /// server may not (unreachable, 5xx), moves on and runs it again at once against the next,
    /// until one answers or every server has failed once. The error is the last server's.
    pub async fn try_each<T, E, F, Fut>(&self, mut op: F, fail_over: impl Fn(&E) -> bool) -> Result<T, E>
    where
        F: FnMut(Arc<str>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut round = self.round();
        loop {
            // A round always has a first attempt: there is at least one server.
            let attempt = round.next().unwrap_or_else(|| self.current());
            match op(attempt.url.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if fail_over(&e) => {
                    round.failed(&attempt);
                    if round.exhausted() {
                        return Err(e);
                    }
                    tracing::info!(server = %attempt.url, next = %self.current().url, "server unreachable; trying the next");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Tries over the servers: the current one, and after each failure the next, until every
/// server has failed once in a row. A success starts the count again.
#[derive(Debug, Clone)]
pub struct Round {
    endpoints: Endpoints,
    failures: usize,
}

impl Round {
    /// The server to try next; `None` once every server has failed in this round (time to wait
    /// before the next round).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Attempt> {
        (!self.exhausted()).then(|| self.endpoints.current())
    }

    /// `attempt` failed: it counts against the round, and the client moves to the next server.
    pub fn failed(&mut self, attempt: &Attempt) {
        self.failures += 1;
        self.endpoints.failed(attempt);
    }

    /// A server answered: the next failure starts a new round.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Whether every server has failed in this round.
    pub fn exhausted(&self) -> bool {
        self.failures >= self.endpoints.len()
    }

    /// Starts a new round (after the caller's wait), from the current server.
    pub fn restart(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(e: &Endpoints) -> Vec<String> {
        e.urls().map(String::from).collect()
    }

    #[test]
    fn a_list_parses_and_a_bad_entry_is_named() {
        let e = Endpoints::parse("http://a:1/, https://b:2").unwrap();
        assert_eq!(urls(&e), vec!["http://a:1", "https://b:2"]);
        assert_eq!(e.to_string(), "http://a:1,https://b:2");
        assert_eq!(Endpoints::parse("http://one:4580").unwrap().len(), 1);
        assert_eq!(Endpoints::parse("  ").unwrap_err(), EndpointsError::Empty);
        let err = Endpoints::parse("http://a:1,,http://b:2").unwrap_err();
        assert!(matches!(err, EndpointsError::EmptyEntry { position: 2, .. }), "{err}");
        let err = Endpoints::parse("http://a:1,").unwrap_err();
        assert!(matches!(err, EndpointsError::EmptyEntry { position: 2, .. }), "{err}");
        let err = Endpoints::parse("http://a:1,b:2").unwrap_err();
        assert!(err.to_string().contains("\"b:2\""), "{err}");
        let err = Endpoints::parse("ftp://a").unwrap_err();
        assert!(err.to_string().contains("ftp://a") && err.to_string().contains("http://"), "{err}");
        assert!(Endpoints::parse("http://").is_err());
        assert!(Endpoints::parse("http://a:1?x=1").is_err());
        assert_eq!(parse_list("http://a:1/,http://b:2").unwrap(), "http://a:1,http://b:2");
    }

    #[test]
    fn failures_move_round_robin_and_clones_move_together() {
        let e = Endpoints::parse("http://a,http://b,http://c").unwrap().starting_at(1);
        let shared = e.clone();
        let order: Vec<String> = (0..5)
            .map(|_| {
                let at = e.current();
                e.failed(&at);
                at.url.to_string()
            })
            .collect();
        assert_eq!(order, vec!["http://b", "http://c", "http://a", "http://b", "http://c"]);
        assert_eq!(&*shared.current().url, "http://a", "a clone moved with it");
        // A detached copy keeps its own place.
        let own = e.detached().starting_at(0);
        own.failed(&own.current());
        assert_eq!((&*own.current().url, &*e.current().url), ("http://b", "http://a"));
    }

    #[test]
    fn two_callers_failing_on_one_server_move_once() {
        let e = Endpoints::parse("http://a,http://b,http://c").unwrap().starting_at(0);
        let (first, second) = (e.current(), e.current());
        e.failed(&first);
        e.failed(&second);
        assert_eq!(&*e.current().url, "http://b");
    }

    #[test]
    fn a_round_ends_after_every_server_failed_once_and_a_success_restarts_it() {
        let e = Endpoints::parse("http://a,http://b").unwrap().starting_at(0);
        let mut round = e.round();
        let a = round.next().unwrap();
        round.failed(&a);
        let b = round.next().unwrap();
        assert_eq!((&*a.url, &*b.url), ("http://a", "http://b"));
        round.failed(&b);
        assert!(round.next().is_none(), "a full round failed: the caller waits");
        round.restart();
        assert_eq!(&*round.next().unwrap().url, "http://a");
        // A success in the middle of a round: the next failure starts a round of its own.
        let a = round.next().unwrap();
        round.failed(&a);
        round.succeeded();
        let b = round.next().unwrap();
        round.failed(&b);
        assert!(round.next().is_some(), "one failure since the success is not a full round");
    }

    #[test]
    fn one_url_fails_a_whole_round_at_once_as_before() {
        let e = Endpoints::parse("http://only:4580").unwrap();
        let mut round = e.round();
        let at = round.next().unwrap();
        assert_eq!(&*at.url, "http://only:4580");
        round.failed(&at);
        assert!(round.next().is_none());
        assert_eq!(&*e.current().url, "http://only:4580");
    }

    #[tokio::test]
    async fn try_each_moves_on_until_one_answers_or_all_failed() {
        let e = Endpoints::parse("http://a,http://b,http://c").unwrap().starting_at(0);
        let tried = std::sync::Mutex::new(Vec::new());
        let answer = e
            .try_each(
                |url| {
                    tried.lock().unwrap().push(url.to_string());
                    async move {
                        match &*url {
                            "http://c" => Ok("c answered"),
                            _ => Err("unreachable"),
                        }
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(answer, Ok("c answered"));
        assert_eq!(*tried.lock().unwrap(), vec!["http://a", "http://b", "http://c"]);
        assert_eq!(&*e.current().url, "http://c", "the next call starts where the last answer came from");

        tried.lock().unwrap().clear();
        let all_down: Result<(), &str> = e
            .try_each(
                |url| {
                    tried.lock().unwrap().push(url.to_string());
                    async { Err("unreachable") }
                },
                |_| true,
            )
            .await;
        assert_eq!(all_down, Err("unreachable"));
        assert_eq!(tried.lock().unwrap().len(), 3, "each server once, then the caller decides");

        // An error another server would answer the same way is not retried elsewhere.
        tried.lock().unwrap().clear();
        let refused: Result<(), &str> = e
            .try_each(
                |url| {
                    tried.lock().unwrap().push(url.to_string());
                    async { Err("AccessDenied") }
                },
                |e| *e != "AccessDenied",
            )
            .await;
        assert_eq!((refused, tried.lock().unwrap().len()), (Err("AccessDenied"), 1));
    }

    #[test]
    fn fresh_lists_start_spread_over_the_servers() {
        let starts: std::collections::HashSet<String> = (0..200)
            .map(|_| Endpoints::parse("http://a,http://b,http://c").unwrap().current().url.to_string())
            .collect();
        assert_eq!(starts.len(), 3, "{starts:?}");
    }
}
