//! Account settings: PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting and
//! ListAccountSettings. Flotilla has one principal (the root key pair), so a setting for the
//! account and its default are the same record.

use flotilla_model::{
    DeleteAccountSettingRequest, DeleteAccountSettingResponse, ListAccountSettingsRequest, ListAccountSettingsResponse,
    PutAccountSettingDefaultRequest, PutAccountSettingDefaultResponse, PutAccountSettingRequest,
    PutAccountSettingResponse, Setting,
};
use flotilla_store::{Op, Txn};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::pagination::page;
use crate::state::codec::encode;
use crate::state::keys;

/// The value every setting has until it is changed.
fn default_value(name: &str) -> &'static str {
    match name {
        "serviceLongArnFormat" | "taskLongArnFormat" | "containerInstanceLongArnFormat" => "enabled",
        "fargateTaskRetirementWaitPeriod" => "7",
        "defaultLogDriverMode" => "blocking",
        _ => "disabled",
    }
}

/// The `type` ECS gives a setting nobody set: AWS manages GuardDuty's; the rest are the user's.
fn default_type(name: &str) -> &'static str {
    if name == "guardDutyActivate" {
        "aws_managed"
    } else {
        "user"
    }
}

fn check_value(name: &str, value: &str) -> ApiResult<()> {
    let ok = match name {
        "fargateTaskRetirementWaitPeriod" => ["0", "7", "14"].contains(&value),
        "defaultLogDriverMode" => ["blocking", "non-blocking"].contains(&value),
        "containerInsights" => ["enabled", "disabled", "enhanced"].contains(&value),
        _ => ["enabled", "disabled"].contains(&value),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!("value '{value}' is not valid for the setting {name}.")))
    }
}

fn principal(ctx: &Ctx) -> String {
    format!("arn:aws:iam::{}:root", ctx.arns.account)
}

async fn put_setting(ctx: &Ctx, name: String, value: String) -> ApiResult<Setting> {
    check_value(&name, &value)?;
    let setting = Setting {
        name: Some(name.clone()),
        value: Some(value),
        principal_arn: Some(principal(ctx)),
        r#type: Some("user".into()),
    };
    let key = keys::account_setting(&name);
    ctx.commit(Txn::new().then(Op::put(&key, encode(&setting)))).await?;
    Ok(setting)
}

pub async fn put(ctx: &Ctx, req: PutAccountSettingRequest) -> ApiResult<PutAccountSettingResponse> {
    let s = put_setting(ctx, req.name.unwrap_or_default(), req.value.unwrap_or_default()).await?;
    Ok(PutAccountSettingResponse { setting: Some(s) })
}

pub async fn put_default(
    ctx: &Ctx,
    req: PutAccountSettingDefaultRequest,
) -> ApiResult<PutAccountSettingDefaultResponse> {
    let s = put_setting(ctx, req.name.unwrap_or_default(), req.value.unwrap_or_default()).await?;
    Ok(PutAccountSettingDefaultResponse { setting: Some(s) })
}

pub async fn delete(ctx: &Ctx, req: DeleteAccountSettingRequest) -> ApiResult<DeleteAccountSettingResponse> {
    let name = req.name.unwrap_or_default();
    let key = keys::account_setting(&name);
    ctx.commit(Txn::new().then(Op::delete(&key))).await?;
    Ok(DeleteAccountSettingResponse {
        setting: Some(Setting {
            name: Some(name.clone()),
            value: Some(default_value(&name).into()),
            principal_arn: Some(principal(ctx)),
            r#type: Some("user".into()),
        }),
    })
}

pub async fn list(ctx: &Ctx, req: ListAccountSettingsRequest) -> ApiResult<ListAccountSettingsResponse> {
    let scope = format!(
        "ListAccountSettings\0{}\0{}\0{}",
        req.name.as_deref().unwrap_or(""),
        req.value.as_deref().unwrap_or(""),
        req.effective_settings.unwrap_or(false)
    );
    let pr = ctx.pager.request(&scope, req.next_token.as_deref(), req.max_results, 10, 10)?;
    let ix = ctx.cache.read();
    let set = |name: &str| ix.account_settings.get(&keys::account_setting(name)).map(|e| (*e.value).clone());
    // Without effectiveSettings ECS lists only what was set; with it, every setting's effective
    // value, the defaults included.
    let effective = req.effective_settings.unwrap_or(false);
    let mut all: Vec<Setting> = flotilla_model::enums::SETTING_NAME
        .iter()
        .filter_map(|name| match set(name) {
            Some(s) => Some(s),
            None if effective => Some(Setting {
                name: Some((*name).into()),
                value: Some(default_value(name).into()),
                principal_arn: Some(principal(ctx)),
                r#type: Some(default_type(name).into()),
            }),
            None => None,
        })
        .filter(|s| req.name.as_ref().is_none_or(|n| s.name.as_ref() == Some(n)))
        .filter(|s| req.value.as_ref().is_none_or(|v| s.value.as_ref() == Some(v)))
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let (items, next) = page(&ctx.pager, &scope, &pr, all.into_iter(), |s: &Setting| s.name.as_deref().unwrap_or(""));
    Ok(ListAccountSettingsResponse { settings: Some(items), next_token: next })
}
