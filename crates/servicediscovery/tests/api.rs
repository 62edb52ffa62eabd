//! The Cloud Map API on a real server: routing (signed for `servicediscovery`, or unsigned by
//! its `X-Amz-Target` prefix in dev mode), create-read-delete of namespaces, services and
//! instances with their operations, and the modeled errors.

mod common;

use common::Server;
use flotilla_api::AuthMode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_requests_are_routed_by_their_target_prefix() {
    let server = Server::start(AuthMode::Disabled).await;
    let (status, out) = server.raw("ListNamespaces", &json!({}), false).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["Namespaces"], json!([]));
    let (status, out) = server.raw("GetNamespace", &json!({"Id": "ns-missing"}), false).await;
    assert_eq!((status, out["__type"].as_str()), (400, Some("NamespaceNotFound")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_live_and_die_in_order() {
    let server = Server::start(AuthMode::Verify).await;
    let op = server.call("CreateHttpNamespace", json!({"Name": "shop", "CreatorRequestId": "req-1"})).await;
    let again = server.call("CreateHttpNamespace", json!({"Name": "shop", "CreatorRequestId": "req-1"})).await;
    assert_eq!(op["OperationId"], again["OperationId"], "a retried request gets its operation back");
    let (code, err) = server.fail("CreateHttpNamespace", json!({"Name": "shop", "CreatorRequestId": "req-2"})).await;
    assert_eq!(code, "NamespaceAlreadyExists");
    assert_eq!(err["CreatorRequestId"], "req-1");
    let ns = err["NamespaceId"].as_str().unwrap().to_string();

    let (code, _) = server.fail("CreatePrivateDnsNamespace", json!({"Name": "x.local"})).await;
    assert_eq!(code, "InvalidInput", "Vpc is required");
    let (code, err) = server.fail("CreatePublicDnsNamespace", json!({"Name": "x.com"})).await;
    assert_eq!(code, "InvalidInput");
    assert!(err["Message"].as_str().unwrap().contains("not supported by Flotilla"));

    let svc = server.call("CreateService", json!({"Name": "cart", "NamespaceId": ns})).await;
    assert_eq!(svc["Service"]["Type"], "HTTP");
    let svc_id = svc["Service"]["Id"].as_str().unwrap().to_string();
    let (code, err) = server.fail("CreateService", json!({"Name": "cart", "NamespaceId": ns})).await;
    assert_eq!((code.as_str(), err["ServiceId"].as_str()), ("ServiceAlreadyExists", Some(svc_id.as_str())));
    let (code, _) = server.fail("DeleteNamespace", json!({"Id": ns})).await;
    assert_eq!(code, "ResourceInUse");

    server
        .call("RegisterInstance", json!({"ServiceId": svc_id, "InstanceId": "i-1", "Attributes": {"color": "blue"}}))
        .await;
    let found = server.call("DiscoverInstances", json!({"NamespaceName": "shop", "ServiceName": "cart"})).await;
    assert_eq!(found["Instances"][0]["Attributes"]["color"], "blue");
    let revision = found["InstancesRevision"].as_u64().unwrap();
    let (code, _) = server.fail("DeleteService", json!({"Id": svc_id})).await;
    assert_eq!(code, "ResourceInUse");
    let op = server.call("DeregisterInstance", json!({"ServiceId": svc_id, "InstanceId": "i-1"})).await;
    let got = server.call("GetOperation", json!({"OperationId": op["OperationId"]})).await;
    assert_eq!(got["Operation"]["Type"], "DEREGISTER_INSTANCE");
    assert_eq!(got["Operation"]["Targets"]["INSTANCE"], "i-1");
    let after = server.call("DiscoverInstancesRevision", json!({"NamespaceName": "shop", "ServiceName": "cart"})).await;
    assert!(after["InstancesRevision"].as_u64().unwrap() > revision);
    server.call("DeleteService", json!({"Id": svc_id})).await;
    server.call("DeleteNamespace", json!({"Id": ns})).await;
    let (code, _) = server.fail("GetNamespace", json!({"Id": ns})).await;
    assert_eq!(code, "NamespaceNotFound");
    let ops =
        server.call("ListOperations", json!({"Filters": [{"Name": "TYPE", "Values": ["DELETE_NAMESPACE"]}]})).await;
    assert_eq!(ops["Operations"].as_array().unwrap().len(), 1);
    server.stop().await;
}
