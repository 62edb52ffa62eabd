//! The instance types hosts can be launched as: the common families, with the vCPUs and memory
//! EC2 gives them, and what an ECS agent on such a host registers (1,024 CPU units per vCPU;
//! memory less what the operating system keeps and less `ECS_RESERVED_MEMORY`).

/// One instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceType {
    pub name: &'static str,
    pub vcpus: u32,
    pub memory_mib: u32,
}

impl InstanceType {
    /// The CPU units an ECS agent registers: 1,024 per vCPU.
    pub fn ecs_cpu(&self) -> i32 {
        (self.vcpus * 1024) as i32
    }

    /// The memory (MiB) an ECS agent registers: the instance's less a sixteenth kept by the
    /// operating system (an m5.large's 8,192 MiB registers as 7,680, close to what ECS shows)
    /// and less `reserved_mib` (`ECS_RESERVED_MEMORY`).
    pub fn ecs_memory(&self, reserved_mib: u32) -> i32 {
        let usable = self.memory_mib - self.memory_mib / 16;
        usable.saturating_sub(reserved_mib) as i32
    }
}

const fn t(name: &'static str, vcpus: u32, memory_mib: u32) -> InstanceType {
    InstanceType { name, vcpus, memory_mib }
}

/// Every type Flotilla knows, smallest first within each family.
pub const ALL: &[InstanceType] = &[
    t("t2.micro", 1, 1024),
    t("t2.small", 1, 2048),
    t("t2.medium", 2, 4096),
    t("t2.large", 2, 8192),
    t("t2.xlarge", 4, 16384),
    t("t2.2xlarge", 8, 32768),
    t("t3.micro", 2, 1024),
    t("t3.small", 2, 2048),
    t("t3.medium", 2, 4096),
    t("t3.large", 2, 8192),
    t("t3.xlarge", 4, 16384),
    t("t3.2xlarge", 8, 32768),
    t("t3a.micro", 2, 1024),
    t("t3a.small", 2, 2048),
    t("t3a.medium", 2, 4096),
    t("t3a.large", 2, 8192),
    t("t3a.xlarge", 4, 16384),
    t("t3a.2xlarge", 8, 32768),
    t("m4.large", 2, 8192),
    t("m4.xlarge", 4, 16384),
    t("m4.2xlarge", 8, 32768),
    t("m4.4xlarge", 16, 65536),
    t("m5.large", 2, 8192),
    t("m5.xlarge", 4, 16384),
    t("m5.2xlarge", 8, 32768),
    t("m5.4xlarge", 16, 65536),
    t("m5a.large", 2, 8192),
    t("m5a.xlarge", 4, 16384),
    t("m5a.2xlarge", 8, 32768),
    t("m5a.4xlarge", 16, 65536),
    t("m5d.large", 2, 8192),
    t("m5d.xlarge", 4, 16384),
    t("m5d.2xlarge", 8, 32768),
    t("m5d.4xlarge", 16, 65536),
    t("c4.large", 2, 3840),
    t("c4.xlarge", 4, 7680),
    t("c4.2xlarge", 8, 15360),
    t("c4.4xlarge", 16, 30720),
    t("c5.large", 2, 4096),
    t("c5.xlarge", 4, 8192),
    t("c5.2xlarge", 8, 16384),
    t("c5.4xlarge", 16, 32768),
    t("c5a.large", 2, 4096),
    t("c5a.xlarge", 4, 8192),
    t("c5a.2xlarge", 8, 16384),
    t("c5a.4xlarge", 16, 32768),
    t("r4.large", 2, 15616),
    t("r4.xlarge", 4, 31232),
    t("r4.2xlarge", 8, 62464),
    t("r4.4xlarge", 16, 124928),
    t("r5.large", 2, 16384),
    t("r5.xlarge", 4, 32768),
    t("r5.2xlarge", 8, 65536),
    t("r5.4xlarge", 16, 131072),
];

/// The type called `name`, if Flotilla knows it.
pub fn lookup(name: &str) -> Option<InstanceType> {
    ALL.iter().copied().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_resources_follow_the_accounting() {
        let m5 = lookup("m5.large").unwrap();
        assert_eq!(m5.ecs_cpu(), 2048);
        assert_eq!(m5.ecs_memory(0), 7680);
        assert_eq!(m5.ecs_memory(256), 7424);
        assert_eq!(lookup("m5.huge"), None);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = ALL.iter().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
