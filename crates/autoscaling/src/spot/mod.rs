//! Spot interruptions (built by the hosts work).
