//! The region's default VPC as EC2 describes it: one VPC (172.31.0.0/16), one default subnet per
//! availability zone (zones `<region>a`, `b`, `c`) and one default security group. Ids are
//! derived from the region, so every server of a region names them alike.

/// Availability zone letters of every region.
pub const ZONE_LETTERS: &[char] = &['a', 'b', 'c'];

/// A subnet: one of the default VPC's (derived) or one created with CreateSubnet (stored under
/// `keys::subnet`, in the codec's JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub subnet_id: String,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub cidr_block: String,
    /// The first address hosts in this subnet are given (the fifth of the block, as EC2 keeps four).
    pub first_host: [u8; 4],
    /// The VPC the subnet belongs to.
    #[serde(default)]
    pub vpc_id: String,
    /// Whether it is its zone's default subnet (the default VPC's are).
    #[serde(default)]
    pub default_for_az: bool,
    /// Tags given at CreateSubnet (`TagSpecification`), key to value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
}

impl Subnet {
    /// The block as (network address, prefix length), when it parses.
    pub fn block(&self) -> Option<([u8; 4], u8)> {
        let (ip, len) = self.cidr_block.split_once('/')?;
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
        Some((ip.octets(), len))
    }

    /// How many addresses the block holds (0 when it does not parse).
    pub fn size(&self) -> u64 {
        self.block().map(|(_, len)| block_size(len)).unwrap_or(0)
    }

    /// The addresses EC2 reports free in a new subnet: the block less the five it keeps (the
    /// network address, the router, DNS, one reserved, and the broadcast address).
    pub fn available_ip_address_count(&self) -> u64 {
        self.size().saturating_sub(5)
    }

    /// Whether this subnet's block and `other`'s share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        match (self.block(), other.block()) {
            (Some(a), Some(b)) => blocks_overlap(a, b),
            _ => false,
        }
    }
}

/// An IPv4 CIDR block written as EC2 takes it (`172.31.48.0/20`): the network address and the
/// prefix length, `None` when it does not parse or has bits set past its prefix.
pub fn parse_block(cidr: &str) -> Option<([u8; 4], u8)> {
    let (ip, len) = cidr.split_once('/')?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 2 {
        return None;
    }
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    (u32::from(ip) & !mask(len) == 0).then_some((ip.octets(), len))
}

/// The netmask of a prefix length, as a number.
fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// How many addresses a block of prefix length `len` holds.
pub fn block_size(len: u8) -> u64 {
    1u64 << (32 - u32::from(len.min(32)))
}

/// Whether two blocks share an address.
pub fn blocks_overlap(a: ([u8; 4], u8), b: ([u8; 4], u8)) -> bool {
    let shorter = a.1.min(b.1);
    (u32::from_be_bytes(a.0) ^ u32::from_be_bytes(b.0)) & mask(shorter) == 0
}

/// Whether `inner` lies wholly inside `outer`.
pub fn block_within(inner: ([u8; 4], u8), outer: ([u8; 4], u8)) -> bool {
    inner.1 >= outer.1 && blocks_overlap(inner, outer)
}

/// The first address hosts and tasks get in a block: the fifth, as EC2 keeps the first four.
pub fn first_host_of(network: [u8; 4]) -> [u8; 4] {
    u32::from_be_bytes(network).wrapping_add(4).to_be_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultVpc {
    pub vpc_id: String,
    pub cidr_block: String,
    pub security_group_id: String,
    pub subnets: Vec<Subnet>,
}

/// 17 lowercase hex digits derived from `seed` (FNV-1a), for stable resource ids.
pub fn stable_hex17(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:x}{h:016x}", h.rotate_left(7) & 0xf)
}

/// The default VPC of `region`.
pub fn default_vpc(region: &str) -> DefaultVpc {
    let subnets = ZONE_LETTERS
        .iter()
        .enumerate()
        .map(|(i, letter)| Subnet {
            subnet_id: format!("subnet-{}", stable_hex17(&format!("{region}/subnet/{letter}"))),
            availability_zone: format!("{region}{letter}"),
            availability_zone_id: format!("{}-az{}", region_short(region), i + 1),
            cidr_block: format!("172.31.{}.0/20", i * 16),
            first_host: [172, 31, (i * 16) as u8, 4],
            vpc_id: format!("vpc-{}", stable_hex17(&format!("{region}/vpc"))),
            default_for_az: true,
            tags: Vec::new(),
        })
        .collect();
    DefaultVpc {
        vpc_id: format!("vpc-{}", stable_hex17(&format!("{region}/vpc"))),
        cidr_block: "172.31.0.0/16".into(),
        security_group_id: format!("sg-{}", stable_hex17(&format!("{region}/sg/default"))),
        subnets,
    }
}

/// `use1` for `us-east-1`, as EC2's zone ids abbreviate regions.
fn region_short(region: &str) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    match parts.as_slice() {
        [a, b, n] => format!("{a}{}{n}", b.chars().next().unwrap_or('x')),
        _ => region.to_string(),
    }
}

impl DefaultVpc {
    pub fn subnet(&self, id: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.subnet_id == id)
    }
    pub fn subnet_in_zone(&self, zone: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.availability_zone == zone)
    }
    /// The default subnet of the zone with this id (`use1-az2`).
    pub fn subnet_in_zone_id(&self, zone_id: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.availability_zone_id == zone_id)
    }
    /// The VPC's block, parsed.
    pub fn block(&self) -> Option<([u8; 4], u8)> {
        parse_block(&self.cidr_block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subnet_per_zone_with_stable_ids() {
        let a = default_vpc("us-east-1");
        assert_eq!(a, default_vpc("us-east-1"));
        assert_eq!(a.subnets.len(), 3);
        assert_eq!(a.subnets[1].availability_zone, "us-east-1b");
        assert_eq!(a.subnets[1].availability_zone_id, "use1-az2");
        assert!(a.vpc_id.starts_with("vpc-") && a.vpc_id.len() == 21, "{}", a.vpc_id);
        assert!(a.subnets.iter().all(|s| s.subnet_id.len() == 24));
        assert_ne!(a.subnets[0].subnet_id, a.subnets[1].subnet_id);
        assert_ne!(a.vpc_id, default_vpc("eu-west-1").vpc_id);
    }

    #[test]
    fn blocks_parse_overlap_and_nest() {
        assert_eq!(parse_block("172.31.48.0/20"), Some(([172, 31, 48, 0], 20)));
        for bad in ["172.31.48.1/20", "172.31.48.0", "172.31.48.0/33", "172.31.48.0/+4", "x/20", "172.31.48.0/"] {
            assert_eq!(parse_block(bad), None, "{bad}");
        }
        let b = |s: &str| parse_block(s).unwrap();
        assert!(blocks_overlap(b("172.31.0.0/20"), b("172.31.15.0/24")));
        assert!(blocks_overlap(b("172.31.15.0/24"), b("172.31.0.0/20")));
        assert!(!blocks_overlap(b("172.31.0.0/20"), b("172.31.16.0/24")));
        assert!(block_within(b("172.31.48.0/24"), b("172.31.0.0/16")));
        assert!(!block_within(b("10.0.0.0/24"), b("172.31.0.0/16")));
        assert!(!block_within(b("172.0.0.0/8"), b("172.31.0.0/16")));
        assert_eq!(first_host_of([172, 31, 48, 0]), [172, 31, 48, 4]);
        let vpc = default_vpc("us-east-1");
        assert_eq!(vpc.subnets[0].available_ip_address_count(), 4091);
        assert_eq!(vpc.subnets[0].first_host, first_host_of(vpc.subnets[0].block().unwrap().0));
        assert!(vpc.subnets[0].overlaps(&vpc.subnets[0]) && !vpc.subnets[0].overlaps(&vpc.subnets[1]));
    }
}
