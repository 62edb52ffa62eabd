//! Where the records live in the control plane's store. Keys are part of the stored format.

/// The prefixes of every key these records use.
pub const ROOTS: &[&str] = &["elbv2/", "servicediscovery/"];

/// Load balancers by id (16 hex digits).
pub const LOAD_BALANCER: &str = "elbv2/load-balancer/";
/// Target groups by id (16 hex digits).
pub const TARGET_GROUP: &str = "elbv2/target-group/";
/// Listeners by load balancer id, then listener id.
pub const LISTENER: &str = "elbv2/listener/";
/// Rules by listener id, then rule id.
pub const RULE: &str = "elbv2/rule/";
/// Registered targets by target group id, then `ID:PORT`.
pub const TARGET: &str = "elbv2/target/";
/// Health of registered targets, as load balancer nodes report it, keyed like [`TARGET`].
pub const TARGET_HEALTH: &str = "elbv2/target-health/";

/// Cloud Map namespaces by id (`ns-` and 16 characters).
pub const NAMESPACE: &str = "servicediscovery/namespace/";
/// Cloud Map services by id (`srv-` and 16 characters).
pub const SERVICE: &str = "servicediscovery/service/";
/// Cloud Map instances by service id, then instance id.
pub const INSTANCE: &str = "servicediscovery/instance/";
/// Cloud Map operations by id.
pub const OPERATION: &str = "servicediscovery/operation/";
/// Namespace ids by namespace name (names are unique across namespaces): the key a create
/// compares absent so two namespaces never share a name.
pub const NAMESPACE_NAME: &str = "servicediscovery/namespace-name/";
/// Service ids by namespace id, then service name (unique within a namespace).
pub const SERVICE_NAME: &str = "servicediscovery/service-name/";
/// [`crate::cloudmap::CreatorRequest`]s by kind of request, then `CreatorRequestId`.
pub const CREATOR_REQUEST: &str = "servicediscovery/creator-request/";

pub fn load_balancer(id: &str) -> String {
    format!("{LOAD_BALANCER}{id}")
}
pub fn listeners_of(load_balancer_id: &str) -> String {
    format!("{LISTENER}{load_balancer_id}/")
}
pub fn listener(load_balancer_id: &str, listener_id: &str) -> String {
    format!("{LISTENER}{load_balancer_id}/{listener_id}")
}
pub fn rules_of(listener_id: &str) -> String {
    format!("{RULE}{listener_id}/")
}
pub fn rule(listener_id: &str, rule_id: &str) -> String {
    format!("{RULE}{listener_id}/{rule_id}")
}
pub fn target_group(id: &str) -> String {
    format!("{TARGET_GROUP}{id}")
}
/// The prefix of one target group's targets.
pub fn targets_of(target_group_id: &str) -> String {
    format!("{TARGET}{target_group_id}/")
}
pub fn target(target_group_id: &str, target_id: &str, port: u16) -> String {
    format!("{TARGET}{target_group_id}/{target_id}:{port}")
}
/// The prefix of one target group's target health.
pub fn target_health_of(target_group_id: &str) -> String {
    format!("{TARGET_HEALTH}{target_group_id}/")
}
pub fn target_health(target_group_id: &str, target_id: &str, port: u16) -> String {
    format!("{TARGET_HEALTH}{target_group_id}/{target_id}:{port}")
}
pub fn namespace(id: &str) -> String {
    format!("{NAMESPACE}{id}")
}
pub fn service(id: &str) -> String {
    format!("{SERVICE}{id}")
}
/// The prefix of one Cloud Map service's instances.
pub fn instances_of(service_id: &str) -> String {
    format!("{INSTANCE}{service_id}/")
}
pub fn instance(service_id: &str, instance_id: &str) -> String {
    format!("{INSTANCE}{service_id}/{instance_id}")
}
pub fn operation(id: &str) -> String {
    format!("{OPERATION}{id}")
}
pub fn namespace_name(name: &str) -> String {
    format!("{NAMESPACE_NAME}{name}")
}
pub fn service_name(namespace_id: &str, name: &str) -> String {
    format!("{SERVICE_NAME}{namespace_id}/{name}")
}
/// `kind` names the request (`namespace`, `service`, `instance/<service id>`), so one id may be
/// reused across kinds as AWS allows.
pub fn creator_request(kind: &str, request_id: &str) -> String {
    format!("{CREATOR_REQUEST}{kind}/{request_id}")
}
