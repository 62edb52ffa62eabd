//! Joining with a token: the agent presents a join token once (`POST /v1/join`), the server
//! registers its container instance and answers with a key pair bound to that instance. The pair
//! is kept in the data directory (mode 0600) beside the identity, so a restarted agent opens its
//! session again without the token, and the root key pair never has to be on the host.

use std::io::Write;
use std::path::Path;

use flotilla_model::{ContainerInstance, RegisterContainerInstanceRequest};
use flotilla_sigv4::Credentials;
use serde::{Deserialize, Serialize};

use super::api_client::{ApiClient, ApiClientError};
use super::registration::{register, registration_request, AgentIdentity, RegistrationConfig};

/// Where the agent's own key pair is kept, under the data directory.
pub const CREDENTIALS_FILE: &str = "agent-credentials.json";
/// The control plane's join endpoint.
pub const JOIN_PATH: &str = "/v1/join";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SavedCredentials {
    access_key_id: String,
    secret_access_key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinRequest<'a> {
    token: &'a str,
    registration: RegisterContainerInstanceRequest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinResponse {
    container_instance: Option<ContainerInstance>,
    credentials: SavedCredentials,
}

fn load(dir: &Path) -> Option<Credentials> {
    let saved: SavedCredentials = serde_json::from_slice(&std::fs::read(dir.join(CREDENTIALS_FILE)).ok()?).ok()?;
    Some(Credentials::new(saved.access_key_id, saved.secret_access_key))
}

fn save(dir: &Path, saved: &SavedCredentials) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{CREDENTIALS_FILE}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(saved).expect("credentials encode"))?;
    f.sync_all()?;
    std::fs::rename(tmp, dir.join(CREDENTIALS_FILE))
}

/// Forgets the saved key pair (revoked: the instance was deregistered), so that the next start
/// joins again with a token. A file already gone is fine.
pub fn forget(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(CREDENTIALS_FILE));
}

/// The agent's client and identity: the saved ones of an agent that joined before; else a join
/// with `token`; else (no token: the root key pair, hollow agents and tests) a registration
/// signed with `client`'s own credentials.
pub async fn enroll(
    client: &ApiClient,
    cfg: &RegistrationConfig,
    token: Option<&str>,
) -> Result<(ApiClient, AgentIdentity), ApiClientError> {
    let identity = AgentIdentity::load(&cfg.data_dir, &cfg.state_file);
    if let (Some(identity), Some(creds)) = (identity.clone(), load(&cfg.data_dir)) {
        return Ok((client.with_credentials(creds), identity));
    }
    let Some(token) = token else {
        let (identity, _) = register(client, cfg).await?;
        return Ok((client.clone(), identity));
    };
    // An agent that registered before (with the root pair) keeps its instance and tasks.
    let mut registration = registration_request(cfg, identity.as_ref());
    let resp: JoinResponse =
        match client.post_unsigned(JOIN_PATH, &JoinRequest { token, registration: registration.clone() }).await {
            // The saved instance was deregistered or belongs elsewhere: join as a new instance.
            Err(ApiClientError::Api { code, .. })
                if identity.is_some() && (code == "ClientException" || code == "InvalidParameterException") =>
            {
                registration.container_instance_arn = None;
                client.post_unsigned(JOIN_PATH, &JoinRequest { token, registration }).await?
            }
            other => other?,
        };
    let arn = resp
        .container_instance
        .and_then(|ci| ci.container_instance_arn)
        .ok_or_else(|| ApiClientError::Decode("no containerInstance in the answer".into()))?;
    let cluster_arn = arn
        .split_once(":container-instance/")
        .map(|(scope, rest)| format!("{scope}:cluster/{}", rest.split('/').next().unwrap_or("")))
        .unwrap_or_default();
    let identity = AgentIdentity { cluster_arn, container_instance_arn: arn };
    // The key pair first: an identity without it would make the next start join again.
    save(&cfg.data_dir, &resp.credentials)
        .map_err(|e| ApiClientError::Request(format!("saving the agent's credentials: {e}")))?;
    identity
        .save(&cfg.data_dir, &cfg.state_file)
        .map_err(|e| ApiClientError::Request(format!("saving the agent identity: {e}")))?;
    let creds = Credentials::new(resp.credentials.access_key_id, resp.credentials.secret_access_key);
    Ok((client.with_credentials(creds), identity))
}
