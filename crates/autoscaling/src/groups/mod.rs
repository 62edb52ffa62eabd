//! The group loop (built by the hosts work).
