//! The JSON shapes Cloud Map answers with, written from the stored records.

use flotilla_endpoints::cloudmap::{
    Instance, Namespace, NamespaceType, Operation, OperationStatus, OperationType, RecordType, RoutingPolicy, Service,
};
use flotilla_endpoints::Tag;
use serde_json::{json, Map, Value};

use super::store::epoch;

pub fn namespace_type(kind: NamespaceType) -> &'static str {
    match kind {
        NamespaceType::DnsPublic => "DNS_PUBLIC",
        NamespaceType::DnsPrivate => "DNS_PRIVATE",
        NamespaceType::Http => "HTTP",
    }
}

/// A private namespace's (made-up, stable) Route 53 hosted zone id.
pub fn hosted_zone_id(namespace: &Namespace) -> String {
    format!("Z{}", namespace.id.trim_start_matches("ns-").to_ascii_uppercase())
}

pub fn namespace(ns: &Namespace, service_count: usize) -> Value {
    let mut properties = Map::new();
    if ns.kind != NamespaceType::Http {
        let mut dns = Map::new();
        dns.insert("HostedZoneId".into(), hosted_zone_id(ns).into());
        if let Some(ttl) = ns.soa_ttl {
            dns.insert("SOA".into(), json!({ "TTL": ttl }));
        }
        properties.insert("DnsProperties".into(), Value::Object(dns));
    }
    properties.insert("HttpProperties".into(), json!({ "HttpName": ns.name }));
    let mut v = json!({
        "Id": ns.id,
        "Arn": ns.arn,
        "Name": ns.name,
        "Type": namespace_type(ns.kind),
        "ServiceCount": service_count,
        "Properties": properties,
        "CreateDate": epoch(ns.created_at_ms),
    });
    if let Some(d) = &ns.description {
        v["Description"] = d.clone().into();
    }
    if let Some(r) = &ns.creator_request_id {
        v["CreatorRequestId"] = r.clone().into();
    }
    v
}

pub fn record_type(kind: RecordType) -> &'static str {
    match kind {
        RecordType::A => "A",
        RecordType::Aaaa => "AAAA",
        RecordType::Srv => "SRV",
        RecordType::Cname => "CNAME",
    }
}

pub fn service(svc: &Service, instance_count: usize) -> Value {
    let mut v = json!({
        "Id": svc.id,
        "Arn": svc.arn,
        "Name": svc.name,
        "NamespaceId": svc.namespace_id,
        "InstanceCount": instance_count,
        "Type": if svc.dns_config.is_some() { "DNS_HTTP" } else { "HTTP" },
        "CreateDate": epoch(svc.created_at_ms),
    });
    if let Some(dns) = &svc.dns_config {
        let records: Vec<Value> =
            dns.records.iter().map(|r| json!({ "Type": record_type(r.kind), "TTL": r.ttl })).collect();
        let policy = match dns.routing_policy {
            RoutingPolicy::Multivalue => "MULTIVALUE",
            RoutingPolicy::Weighted => "WEIGHTED",
        };
        v["DnsConfig"] = json!({ "NamespaceId": svc.namespace_id, "RoutingPolicy": policy, "DnsRecords": records });
    }
    if svc.custom_health {
        v["HealthCheckCustomConfig"] = json!({ "FailureThreshold": 1 });
    }
    if let Some(h) = &svc.health_check_config {
        v["HealthCheckConfig"] = h.clone();
    }
    if let Some(d) = &svc.description {
        v["Description"] = d.clone().into();
    }
    if let Some(r) = &svc.creator_request_id {
        v["CreatorRequestId"] = r.clone().into();
    }
    v
}

pub fn instance(i: &Instance) -> Value {
    let mut v = json!({ "Id": i.id, "Attributes": i.attributes });
    if let Some(r) = &i.creator_request_id {
        v["CreatorRequestId"] = r.clone().into();
    }
    v
}

pub fn operation_type(kind: OperationType) -> &'static str {
    match kind {
        OperationType::CreateNamespace => "CREATE_NAMESPACE",
        OperationType::DeleteNamespace => "DELETE_NAMESPACE",
        OperationType::UpdateNamespace => "UPDATE_NAMESPACE",
        OperationType::UpdateService => "UPDATE_SERVICE",
        OperationType::RegisterInstance => "REGISTER_INSTANCE",
        OperationType::DeregisterInstance => "DEREGISTER_INSTANCE",
    }
}

pub fn operation_status(status: OperationStatus) -> &'static str {
    match status {
        OperationStatus::Submitted => "SUBMITTED",
        OperationStatus::Pending => "PENDING",
        OperationStatus::Success => "SUCCESS",
        OperationStatus::Fail => "FAIL",
    }
}

pub fn operation(op: &Operation) -> Value {
    let mut v = json!({
        "Id": op.id,
        "Type": operation_type(op.kind),
        "Status": operation_status(op.status),
        "CreateDate": epoch(op.created_at_ms),
        "UpdateDate": epoch(op.updated_at_ms),
        "Targets": op.targets,
    });
    if let Some(c) = &op.error_code {
        v["ErrorCode"] = c.clone().into();
    }
    if let Some(m) = &op.error_message {
        v["ErrorMessage"] = m.clone().into();
    }
    v
}

pub fn tags(tags: &[Tag]) -> Value {
    Value::Array(tags.iter().map(|t| json!({ "Key": t.key, "Value": t.value })).collect())
}
