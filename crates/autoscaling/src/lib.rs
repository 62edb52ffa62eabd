//! Self-hosted EC2 Auto Scaling and the pieces of EC2 it needs. `api` serves the Auto Scaling
//! and EC2 query APIs on the control plane's listener (routed by the SigV4 service name);
//! `provision` launches and terminates hosts (`local` agent processes, `simulate`d hollow hosts,
//! an operator's `command`) behind one trait; `groups` is the level-triggered loop that keeps
//! each group's hosts at its desired capacity; `spot` gives Spot hosts their interruption notice.
//! The records they share with ECS's capacity providers are in `flotilla-hosts`.

pub mod api;
pub mod groups;
pub mod provision;
pub mod spot;

/// Starts the group loop with the provisioner `kind` names: what `flotilla server` and `flotilla
/// up` call once the control plane's context is open.
pub fn start(
    ctx: &flotilla_api::Ctx,
    kind: &provision::ProvisionerKind,
    cp: provision::ControlPlane,
) -> Result<flotilla_api::supervisor::LoopHandle, provision::ProvisionError> {
    let settings = groups::Settings::with_root_secret(&cp.secret_access_key);
    let provisioner = provision::build(kind, cp)?;
    tracing::info!(provisioner = provisioner.name(), "Auto Scaling group loop starting");
    Ok(groups::spawn(ctx, provisioner, settings))
}
