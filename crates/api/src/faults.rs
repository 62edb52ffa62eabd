//! Test-only fault injection: tests arm a fault at a named site for a subject (a store key, a
//! cluster, a service key) and the code at that site panics or fails when it meets the subject.
//! Built only with the `fault-injection` feature (which the crate's own tests turn on); without
//! it [`hit`] is a constant `false` and every site compiles away.
//!
//! Subjects match by substring, so a test arms a name unique to itself (tests in one binary may
//! share the process) and never trips another test's loops.

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// The cache follower panics while applying a put of a matching store key.
    CacheApply,
    /// The service controller panics when its pass reaches a matching service key.
    ControllerPass,
    /// A scheduler snapshot rebuild of a matching cluster panics half-way.
    SnapshotRebuild,
    /// The controller's step for a matching service key fails with an error.
    ServiceLaunch,
}

#[cfg(feature = "fault-injection")]
mod armed {
    use super::Site;
    use std::sync::Mutex;

    /// (site, subject, how many more hits).
    static ARMED: Mutex<Vec<(Site, String, u32)>> = Mutex::new(Vec::new());

    pub fn arm(site: Site, subject: &str, times: u32) {
        crate::locks::lock(&ARMED).push((site, subject.to_string(), times));
    }

    pub fn hit(site: Site, subject: &str) -> bool {
        let mut armed = crate::locks::lock(&ARMED);
        let Some(i) = armed.iter().position(|(s, sub, n)| *s == site && *n > 0 && subject.contains(sub.as_str()))
        else {
            return false;
        };
        armed[i].2 -= 1;
        true
    }
}

/// Arms `site` for subjects containing `subject`, for the next `times` hits.
#[cfg(feature = "fault-injection")]
pub use armed::arm;

/// Whether an armed fault fires here (and uses up one of its hits).
#[cfg(feature = "fault-injection")]
pub fn hit(site: Site, subject: &str) -> bool {
    armed::hit(site, subject)
}

/// Whether an armed fault fires here: never, in a build without `fault-injection`.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn hit(_site: Site, _subject: &str) -> bool {
    false
}
