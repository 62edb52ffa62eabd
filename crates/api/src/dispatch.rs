//! The operation table: which handler serves each ECS operation. Operations Flotilla does not
//! serve yet answer UnsupportedFeatureException, never a fake success.

use flotilla_model::{Operation, Validate};

use crate::context::Ctx;
use crate::error::ApiError;
use crate::handlers::{
    account_settings, attributes, capacity_providers, clusters, container_instances, run_task, services, start_task,
    tags, task_definitions, tasks,
};
use crate::protocol::decode;

macro_rules! call {
    ($ctx:expr, $body:expr, $handler:path) => {{
        let req = decode($body)?;
        Validate::validate_request(&req)?;
        let out = $handler($ctx, req).await?;
        serde_json::to_vec(&out).map_err(|e| ApiError::server(format!("could not encode the response: {e}")))
    }};
}

/// For handlers that write their answer's JSON themselves.
macro_rules! call_raw {
    ($ctx:expr, $body:expr, $handler:path) => {{
        let req = decode($body)?;
        Validate::validate_request(&req)?;
        $handler($ctx, req).await
    }};
}

/// Decodes, validates and handles one request; returns the response body.
pub async fn dispatch(ctx: &Ctx, op: Operation, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    use Operation as O;
    match op {
        O::CreateCluster => call!(ctx, body, clusters::create),
        O::DescribeClusters => call!(ctx, body, clusters::describe),
        O::ListClusters => call!(ctx, body, clusters::list),
        O::DeleteCluster => call!(ctx, body, clusters::delete),
        O::UpdateCluster => call!(ctx, body, clusters::update),
        O::UpdateClusterSettings => call!(ctx, body, clusters::update_settings),
        O::PutClusterCapacityProviders => call!(ctx, body, clusters::put_capacity_providers),

        O::CreateCapacityProvider => call!(ctx, body, capacity_providers::create),
        O::UpdateCapacityProvider => call!(ctx, body, capacity_providers::update),
        O::DeleteCapacityProvider => call!(ctx, body, capacity_providers::delete),
        O::DescribeCapacityProviders => call!(ctx, body, capacity_providers::describe),

        O::RegisterTaskDefinition => call!(ctx, body, task_definitions::register),
        O::DescribeTaskDefinition => call!(ctx, body, task_definitions::describe),
        O::ListTaskDefinitions => call!(ctx, body, task_definitions::list),
        O::ListTaskDefinitionFamilies => call!(ctx, body, task_definitions::list_families),
        O::DeregisterTaskDefinition => call!(ctx, body, task_definitions::deregister),
        O::DeleteTaskDefinitions => call!(ctx, body, task_definitions::delete),

        O::RegisterContainerInstance => call!(ctx, body, container_instances::register),
        O::DeregisterContainerInstance => call!(ctx, body, container_instances::deregister),
        O::DescribeContainerInstances => call!(ctx, body, container_instances::describe),
        O::ListContainerInstances => call!(ctx, body, container_instances::list),
        O::UpdateContainerInstancesState => call!(ctx, body, container_instances::update_state),

        O::PutAttributes => call!(ctx, body, attributes::put),
        O::DeleteAttributes => call!(ctx, body, attributes::delete),
        O::ListAttributes => call!(ctx, body, attributes::list),

        O::DescribeTasks => call_raw!(ctx, body, tasks::describe),
        O::ListTasks => call!(ctx, body, tasks::list),
        O::StopTask => call!(ctx, body, tasks::stop),
        O::StartTask => call!(ctx, body, start_task::start),
        O::RunTask => call!(ctx, body, run_task::run),

        O::CreateService => call!(ctx, body, services::create),
        O::DescribeServices => call!(ctx, body, services::describe),
        O::ListServices => call!(ctx, body, services::list),
        O::UpdateService => call!(ctx, body, services::update),
        O::DeleteService => call!(ctx, body, services::delete),

        O::TagResource => call!(ctx, body, tags::tag_resource),
        O::UntagResource => call!(ctx, body, tags::untag_resource),
        O::ListTagsForResource => call!(ctx, body, tags::list_tags_for_resource),

        O::PutAccountSetting => call!(ctx, body, account_settings::put),
        O::PutAccountSettingDefault => call!(ctx, body, account_settings::put_default),
        O::DeleteAccountSetting => call!(ctx, body, account_settings::delete),
        O::ListAccountSettings => call!(ctx, body, account_settings::list),

        other => Err(ApiError::unsupported(format!("{} is not supported by Flotilla yet.", other.name()))),
    }
}
