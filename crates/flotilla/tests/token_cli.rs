//! `flotilla token create|list|revoke` end to end with the real binary against `flotilla server`,
//! signing with the root key pair from the environment as a user would; and `flotilla agent`
//! refusing to start with neither a token nor a joined identity.

mod common;

use std::process::Command;

const AKID: &str = "AKIDTOKENCLITEST";
const SECRET: &str = "token-cli-test-secret";

fn flotilla(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .env("AWS_ENDPOINT_URL_ECS", endpoint)
        .env("FLOTILLA_ACCESS_KEY_ID", AKID)
        .env("FLOTILLA_SECRET_ACCESS_KEY", SECRET)
        .env("FLOTILLA_LOG", "warn")
        .output()
        .expect("run flotilla");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tokens_are_created_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, endpoint) = common::start_printing_endpoint("server", dir.path(), AKID, SECRET);
    let result = std::panic::catch_unwind(|| {
        let (ok, token, err) = flotilla(&endpoint, &["token", "create", "--cluster", "default", "--ttl", "600"]);
        assert!(ok, "{err}");
        let token = token.trim();
        assert!(token.starts_with("FLTJ1.") && token.contains(".default."), "{token}");
        let id = token.split('.').nth(1).unwrap();

        let (ok, list, err) = flotilla(&endpoint, &["token", "list"]);
        assert!(ok, "{err}");
        let row = list.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} not in {list}"));
        assert!(row.contains("ACTIVE") && row.ends_with("default"), "{row}");
        assert!(!list.contains(token), "the token itself is never listed");

        let (ok, _, err) = flotilla(&endpoint, &["token", "revoke", id]);
        assert!(ok && err.contains("REVOKED"), "{err}");
        let (_, list, _) = flotilla(&endpoint, &["token", "list"]);
        assert!(list.lines().any(|l| l.starts_with(id) && l.contains("REVOKED")), "{list}");

        let (ok, _, err) = flotilla(&endpoint, &["token", "create", "--cluster", "nope"]);
        assert!(!ok && err.contains("ClusterNotFoundException"), "{err}");

        // An agent with no token and no identity of its own says what it needs.
        let agent_dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["agent", "--server", &endpoint, "--data-dir"])
            .arg(agent_dir.path())
            .env_remove("FLOTILLA_ACCESS_KEY_ID")
            .env_remove("FLOTILLA_SECRET_ACCESS_KEY")
            .env_remove("FLOTILLA_JOIN_TOKEN")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("--token"), "{err}");
    });
    let _ = server.kill();
    let _ = server.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
