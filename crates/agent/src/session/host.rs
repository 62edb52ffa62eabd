//! What this host offers, measured as ECS measures it: 1024 CPU units per core, memory less a
//! reservation for the system, and the ports ECS keeps for itself.

/// Ports ECS reserves on every container instance: SSH, the Docker daemon, and the agent's.
pub const RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];

pub fn cpu_units() -> i32 {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores * 1024) as i32
}

/// Total memory in MiB, from /proc/meminfo.
pub fn memory_mib() -> i32 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: i64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (kib / 1024) as i32
}

pub fn cpu_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_something() {
        assert!(super::cpu_units() >= 1024);
        assert!(super::memory_mib() > 0);
    }
}
