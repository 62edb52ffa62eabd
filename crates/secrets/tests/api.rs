//! SSM Parameter Store and Secrets Manager against a real control plane: signed JSON calls,
//! values sealed in the store, tasks' `valueFrom` resolution, the leader's sweep purging deleted
//! secrets and re-sealing values after a key rotation.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Server;
use flotilla_secrets::resolve::Resolver;
use serde_json::json;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The raw stored bytes under `key`.
async fn stored(server: &Server, key: &str) -> Vec<u8> {
    server.ctx.store.get(key).await.expect("read").expect("stored").value.to_vec()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn parameters_have_versions_selectors_paths_and_aws_errors() {
    let s = Server::start().await;
    let put = s.ssm("PutParameter", json!({"Name": "/app/db/host", "Value": "db.internal", "Type": "String"})).await;
    assert_eq!(put, json!({"Version": 1, "Tier": "Standard"}));
    let (code, _) =
        s.fail("ssm", "PutParameter", json!({"Name": "/app/db/host", "Value": "x", "Type": "String"})).await;
    assert_eq!(code, "ParameterAlreadyExists");
    let put = s.ssm("PutParameter", json!({"Name": "/app/db/host", "Value": "db2.internal", "Overwrite": true})).await;
    assert_eq!(put["Version"], 2);
    s.ssm("PutParameter", json!({"Name": "/app/web/port", "Value": "8080", "Type": "String"})).await;
    s.ssm("PutParameter", json!({"Name": "plain", "Value": "a,b", "Type": "StringList", "Description": "d"})).await;

    let got = s.ssm("GetParameter", json!({"Name": "/app/db/host"})).await["Parameter"].clone();
    assert_eq!(got["Value"], "db2.internal");
    assert_eq!(got["Version"], 2);
    assert_eq!(got["Type"], "String");
    assert_eq!(got["DataType"], "text");
    assert_eq!(got["ARN"], "arn:aws:ssm:us-east-1:000000000000:parameter/app/db/host");
    assert!(got["LastModifiedDate"].as_f64().is_some_and(|d| d > 1.0e9));
    let old = s.ssm("GetParameter", json!({"Name": "/app/db/host:1"})).await["Parameter"].clone();
    assert_eq!((old["Value"].as_str(), old["Selector"].as_str()), (Some("db.internal"), Some(":1")));
    let by_arn = s.ssm("GetParameter", json!({"Name": "arn:aws:ssm:us-east-1:000000000000:parameter/plain"})).await;
    assert_eq!(by_arn["Parameter"]["Value"], "a,b");
    let (code, _) = s.fail("ssm", "GetParameter", json!({"Name": "/app/db/host:9"})).await;
    assert_eq!(code, "ParameterVersionNotFound");
    let (code, _) = s.fail("ssm", "GetParameter", json!({"Name": "/nope"})).await;
    assert_eq!(code, "ParameterNotFound");
    let (code, message) = s.fail("ssm", "PutParameter", json!({"Name": "/x", "Value": "v", "Type": "Number"})).await;
    assert_eq!(code, "ValidationException");
    assert!(message.contains("'type'"), "{message}");

    let many = s.ssm("GetParameters", json!({"Names": ["/app/web/port", "/nope", "plain"]})).await;
    assert_eq!(many["Parameters"].as_array().map(Vec::len), Some(2));
    assert_eq!(many["InvalidParameters"], json!(["/nope"]));

    let one_level = s.ssm("GetParametersByPath", json!({"Path": "/app"})).await;
    assert_eq!(one_level["Parameters"], json!([]));
    let first = s.ssm("GetParametersByPath", json!({"Path": "/app", "Recursive": true, "MaxResults": 1})).await;
    assert_eq!(first["Parameters"][0]["Name"], "/app/db/host");
    let token = first["NextToken"].as_str().expect("a next page").to_string();
    let second = s.ssm("GetParametersByPath", json!({"Path": "/app", "Recursive": true, "NextToken": token})).await;
    assert_eq!(second["Parameters"][0]["Name"], "/app/web/port");
    assert!(second.get("NextToken").is_none());

    let described = s
        .ssm(
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Name", "Option": "BeginsWith", "Values": ["/app/"]}]}),
        )
        .await;
    let names: Vec<&str> =
        described["Parameters"].as_array().unwrap().iter().filter_map(|p| p["Name"].as_str()).collect();
    assert_eq!(names, vec!["/app/db/host", "/app/web/port"]);
    assert!(described["Parameters"][0].get("Value").is_none());
    let typed =
        s.ssm("DescribeParameters", json!({"ParameterFilters": [{"Key": "Type", "Values": ["StringList"]}]})).await;
    assert_eq!(typed["Parameters"][0]["Description"], "d");

    let deleted = s.ssm("DeleteParameters", json!({"Names": ["/app/web/port", "/nope"]})).await;
    assert_eq!(deleted, json!({"DeletedParameters": ["/app/web/port"], "InvalidParameters": ["/nope"]}));
    s.ssm("DeleteParameter", json!({"Name": "plain"})).await;
    let (code, _) = s.fail("ssm", "DeleteParameter", json!({"Name": "plain"})).await;
    assert_eq!(code, "ParameterNotFound");
    s.stop().await;
}

#[tokio::test]
async fn a_secure_string_is_sealed_in_the_store_and_opaque_without_decryption() {
    let s = Server::start().await;
    let plaintext = "correct-horse-battery-staple";
    s.ssm("PutParameter", json!({"Name": "/app/pw", "Value": plaintext, "Type": "SecureString"})).await;
    let opaque = s.ssm("GetParameter", json!({"Name": "/app/pw"})).await["Parameter"]["Value"].clone();
    assert_ne!(opaque, plaintext);
    assert!(!opaque.as_str().unwrap().contains(plaintext));
    let clear = s.ssm("GetParameter", json!({"Name": "/app/pw", "WithDecryption": true})).await;
    assert_eq!(clear["Parameter"]["Value"], plaintext);
    let meta = s.ssm("DescribeParameters", json!({})).await;
    assert_eq!(meta["Parameters"][0]["KeyId"], "alias/aws/ssm");
    assert!(!contains(&stored(&s, "ssm/parameters//app/pw").await, plaintext));

    s.sm("CreateSecret", json!({"Name": "db", "SecretString": plaintext})).await;
    assert!(!contains(&stored(&s, "secretsmanager/secrets/db").await, plaintext));
    s.stop().await;
}

#[tokio::test]
async fn secrets_have_staged_versions_a_deletion_window_and_restore() {
    let s = Server::start().await;
    let token = "11111111-2222-3333-4444-555555555555";
    let created = s
        .sm("CreateSecret", json!({"Name": "db", "SecretString": "{\"password\":\"p1\"}", "ClientRequestToken": token, "Description": "the db"}))
        .await;
    let arn = created["ARN"].as_str().unwrap().to_string();
    assert!(arn.starts_with("arn:aws:secretsmanager:us-east-1:000000000000:secret:db-"), "{arn}");
    assert_eq!(arn.len(), "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-".len() + 6);
    assert_eq!(created["VersionId"], token);
    // The same request again is the same secret; another value under the same name is not.
    let again = s
        .sm("CreateSecret", json!({"Name": "db", "SecretString": "{\"password\":\"p1\"}", "ClientRequestToken": token}))
        .await;
    assert_eq!(again["ARN"], arn.as_str());
    let (code, _) = s.fail("secretsmanager", "CreateSecret", json!({"Name": "db", "SecretString": "x"})).await;
    assert_eq!(code, "ResourceExistsException");

    let put = s.sm("PutSecretValue", json!({"SecretId": arn, "SecretString": "{\"password\":\"p2\"}"})).await;
    let v2 = put["VersionId"].as_str().unwrap().to_string();
    assert_eq!(put["VersionStages"], json!(["AWSCURRENT"]));
    let partial = arn[..arn.len() - 7].to_string();
    for id in [arn.as_str(), "db", partial.as_str()] {
        let got = s.sm("GetSecretValue", json!({"SecretId": id})).await;
        assert_eq!(got["SecretString"], "{\"password\":\"p2\"}", "{id}");
    }
    let previous = s.sm("GetSecretValue", json!({"SecretId": "db", "VersionStage": "AWSPREVIOUS"})).await;
    assert_eq!(
        (previous["VersionId"].as_str(), previous["SecretString"].as_str()),
        (Some(token), Some("{\"password\":\"p1\"}"))
    );
    let described = s.sm("DescribeSecret", json!({"SecretId": "db"})).await;
    assert_eq!(described["VersionIdsToStages"][token], json!(["AWSPREVIOUS"]));
    assert_eq!(described["VersionIdsToStages"][&v2], json!(["AWSCURRENT"]));
    assert_eq!(described["Description"], "the db");
    s.sm("UpdateSecret", json!({"SecretId": "db", "Description": "new"})).await;
    let updated = s.sm("UpdateSecret", json!({"SecretId": "db", "SecretString": "v3"})).await;
    assert!(updated["VersionId"].is_string());
    assert_eq!(s.sm("GetSecretValue", json!({"SecretId": "db"})).await["SecretString"], "v3");

    let (code, _) =
        s.fail("secretsmanager", "DeleteSecret", json!({"SecretId": "db", "RecoveryWindowInDays": 3})).await;
    assert_eq!(code, "InvalidParameterException");
    let deleted = s.sm("DeleteSecret", json!({"SecretId": "db", "RecoveryWindowInDays": 7})).await;
    assert!(deleted["DeletionDate"].as_f64().is_some());
    let (code, message) = s.fail("secretsmanager", "GetSecretValue", json!({"SecretId": "db"})).await;
    assert_eq!(code, "InvalidRequestException");
    assert_eq!(message, "You can't perform this operation on the secret because it was marked for deletion.");
    assert!(s.sm("DescribeSecret", json!({"SecretId": "db"})).await["DeletedDate"].is_number());
    assert_eq!(s.sm("ListSecrets", json!({})).await["SecretList"], json!([]));
    let planned = s.sm("ListSecrets", json!({"IncludePlannedDeletion": true})).await;
    assert_eq!(planned["SecretList"][0]["Name"], "db");
    s.sm("RestoreSecret", json!({"SecretId": "db"})).await;
    assert_eq!(s.sm("GetSecretValue", json!({"SecretId": "db"})).await["SecretString"], "v3");

    // Marked again, and eight days on the leader's sweep purges it.
    s.sm("DeleteSecret", json!({"SecretId": "db", "RecoveryWindowInDays": 7})).await;
    s.offset_ms.store(8 * DAY_MS, Ordering::SeqCst);
    let mut last = String::new();
    for _ in 0..200 {
        let (status, out) = s.raw("secretsmanager", "DescribeSecret", &json!({"SecretId": "db"})).await;
        last = out["__type"].as_str().unwrap_or_default().to_string();
        if status == 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(last, "ResourceNotFoundException");
    let (code, message) = s.fail("secretsmanager", "GetSecretValue", json!({"SecretId": arn})).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
    );

    s.sm("CreateSecret", json!({"Name": "gone", "SecretString": "x"})).await;
    s.sm("DeleteSecret", json!({"SecretId": "gone", "ForceDeleteWithoutRecovery": true})).await;
    let (code, _) = s.fail("secretsmanager", "DescribeSecret", json!({"SecretId": "gone"})).await;
    assert_eq!(code, "ResourceNotFoundException");
    s.stop().await;
}

#[tokio::test]
async fn tasks_value_from_resolves_parameters_and_secrets_with_ecs_wording() {
    let s = Server::start().await;
    s.ssm("PutParameter", json!({"Name": "/app/pw", "Value": "s3cret", "Type": "SecureString"})).await;
    s.ssm("PutParameter", json!({"Name": "plain", "Value": "v", "Type": "String"})).await;
    let arn = s.sm("CreateSecret", json!({"Name": "db", "SecretString": "{\"password\":\"p1\",\"port\":5432}"})).await
        ["ARN"]
        .as_str()
        .unwrap()
        .to_string();
    s.sm("PutSecretValue", json!({"SecretId": "db", "SecretString": "{\"password\":\"p2\"}"})).await;
    let source = s.config.extensions.agent_services().secrets.expect("the extension offers a secret source");
    let ok = |v: &str| {
        let v = v.to_string();
        let source = source.clone();
        let ctx = s.ctx.clone();
        async move { source.resolve(&ctx, &v).await }
    };
    assert_eq!(ok("/app/pw").await.unwrap(), "s3cret");
    assert_eq!(ok("arn:aws:ssm:us-east-1:000000000000:parameter/app/pw").await.unwrap(), "s3cret");
    assert_eq!(ok("plain").await.unwrap(), "v");
    assert_eq!(ok(&arn).await.unwrap(), "{\"password\":\"p2\"}");
    assert_eq!(ok(&format!("{arn}:password::")).await.unwrap(), "p2");
    assert_eq!(ok(&format!("{arn}:port:AWSPREVIOUS:")).await.unwrap(), "5432");
    assert_eq!(ok("db:password::").await.unwrap(), "p2");

    let missing = ok("/nope").await.unwrap_err();
    assert_eq!(
        missing.message,
        "unable to retrieve secrets from ssm: service call has been retried 1 time(s): InvalidParameters: invalid parameters: /nope"
    );
    assert!(!missing.transient);
    let nope = "arn:aws:secretsmanager:us-east-1:000000000000:secret:nope-AbCdEf";
    let missing = ok(nope).await.unwrap_err();
    assert_eq!(
        missing.message,
        format!("unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {nope} from secrets manager: ResourceNotFoundException: Secrets Manager can't find the specified secret.")
    );
    let no_key = ok(&format!("{arn}:user::")).await.unwrap_err();
    assert!(
        no_key.message.ends_with("retrieved secret from Secrets Manager did not contain json key user"),
        "{}",
        no_key.message
    );
    s.sm("DeleteSecret", json!({"SecretId": "db"})).await;
    let marked = ok(&arn).await.unwrap_err();
    assert!(marked.message.ends_with("InvalidRequestException: You can't perform this operation on the secret because it was marked for deletion."), "{}", marked.message);
    assert!(!marked.transient);
    s.stop().await;
}

#[tokio::test]
async fn after_a_rotation_the_sweep_reseals_so_the_old_key_can_go() {
    let s = Server::start().await;
    s.ssm("PutParameter", json!({"Name": "/app/pw", "Value": "s3cret", "Type": "SecureString"})).await;
    s.sm("CreateSecret", json!({"Name": "db", "SecretString": "p1"})).await;
    let key_of = |bytes: Vec<u8>| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&bytes[1..]).unwrap();
        v["versions"].as_array().unwrap().iter().map(|v| v["value"]["key"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(key_of(stored(&s, "ssm/parameters//app/pw").await), vec!["k1"]);
    assert_eq!(flotilla_secrets::keyring::rotate_file(&s.key_file).unwrap(), "k2");
    // The sweep reads the file again and re-seals both records under k2.
    let mut sealed = (Vec::new(), Vec::new());
    for _ in 0..200 {
        sealed =
            (key_of(stored(&s, "ssm/parameters//app/pw").await), key_of(stored(&s, "secretsmanager/secrets/db").await));
        if sealed == (vec!["k2".into()], vec!["k2".into()]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(sealed, (vec!["k2".to_string()], vec!["k2".to_string()]));

    // Only k2 left in a copy of the file: everything still opens.
    let text = std::fs::read_to_string(&s.key_file).unwrap();
    let only_k2: String = text.lines().filter(|l| l.starts_with("k2:")).map(|l| format!("{l}\n")).collect();
    let k2_file = s.data_dir.join("k2-only.key");
    std::fs::write(&k2_file, &only_k2).unwrap();
    std::fs::set_permissions(&k2_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (k2, _) = flotilla_secrets::open_keys(&k2_file).unwrap();
    let resolver = Resolver { keys: k2 };
    assert_eq!(resolver.resolve_one(&s.ctx, "/app/pw").await.unwrap(), "s3cret");
    assert_eq!(resolver.resolve_one(&s.ctx, "db").await.unwrap(), "p1");

    // A server given another key file (a fresh k1 only) says which key it lacks, and does not
    // panic.
    let (wrong, _) = flotilla_secrets::open_keys(&s.data_dir.join("other.key")).unwrap();
    let failure = Resolver { keys: wrong }.resolve_one(&s.ctx, "/app/pw").await.unwrap_err();
    assert!(
        failure.message.contains("sealed with key k2, which is not in the secrets key file"),
        "{}",
        failure.message
    );
    assert!(!failure.transient);
    s.stop().await;
}
