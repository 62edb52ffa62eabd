//! Provisioners (built by the hosts work).
