//! Where the records live in the control plane's store. Keys are part of the stored format.

/// The prefixes of every key these records use.
pub const ROOTS: &[&str] = &["ec2/", "autoscaling/"];

/// Launch templates by id (`lt-` and 17 hex digits).
pub const LAUNCH_TEMPLATE: &str = "ec2/launch-template/";
/// Launch template names, each holding its template's id: makes names unique in one transaction.
pub const LAUNCH_TEMPLATE_NAME: &str = "ec2/launch-template-name/";
/// Hosts by EC2 instance id (`i-` and 17 hex digits).
pub const HOST: &str = "ec2/host/";
/// Subnets created with CreateSubnet, by id (the default VPC's are derived, not stored).
pub const SUBNET: &str = "ec2/subnet/";
/// Auto Scaling groups by name.
pub const GROUP: &str = "autoscaling/group/";
/// Scaling activities by group, then by a time-ordered id.
pub const ACTIVITY: &str = "autoscaling/activity/";

pub fn launch_template(id: &str) -> String {
    format!("{LAUNCH_TEMPLATE}{id}")
}
pub fn launch_template_name(name: &str) -> String {
    format!("{LAUNCH_TEMPLATE_NAME}{name}")
}
pub fn host(instance_id: &str) -> String {
    format!("{HOST}{instance_id}")
}
pub fn subnet(id: &str) -> String {
    format!("{SUBNET}{id}")
}
pub fn group(name: &str) -> String {
    format!("{GROUP}{name}")
}
/// The prefix of one group's activities.
pub fn activities_of(group: &str) -> String {
    format!("{ACTIVITY}{group}/")
}
/// `seq` orders activities newest last; zero-padded so key order is time order.
pub fn activity(group: &str, seq: u64) -> String {
    format!("{ACTIVITY}{group}/{seq:020}")
}
