//! Account settings end to end through the official SDK: PutAccountSetting,
//! PutAccountSettingDefault, DeleteAccountSetting and ListAccountSettings.

mod common;

use aws_sdk_ecs::types::SettingName;
use common::*;

async fn value_of(client: &aws_sdk_ecs::Client, name: SettingName) -> Option<String> {
    let out = client.list_account_settings().name(name.clone()).effective_settings(true).send().await.unwrap();
    out.settings().iter().find(|s| s.name() == Some(&name)).and_then(|s| s.value()).map(String::from)
}

#[tokio::test]
async fn put_list_and_delete_a_setting() {
    let server = TestServer::start().await;
    let client = server.client();
    assert_eq!(value_of(&client, SettingName::ContainerInsights).await.as_deref(), Some("disabled"));

    let put = client.put_account_setting().name(SettingName::ContainerInsights).value("enabled").send().await.unwrap();
    let s = put.setting().unwrap();
    assert_eq!(s.name(), Some(&SettingName::ContainerInsights));
    assert_eq!(s.value(), Some("enabled"));
    assert_eq!(s.principal_arn(), Some(format!("arn:aws:iam::{ACCOUNT}:root").as_str()));
    assert_eq!(value_of(&client, SettingName::ContainerInsights).await.as_deref(), Some("enabled"));

    let del = client.delete_account_setting().name(SettingName::ContainerInsights).send().await.unwrap();
    assert_eq!(del.setting().unwrap().name(), Some(&SettingName::ContainerInsights));
    assert_eq!(value_of(&client, SettingName::ContainerInsights).await.as_deref(), Some("disabled"));

    client
        .put_account_setting_default()
        .name(SettingName::FargateTaskRetirementWaitPeriod)
        .value("14")
        .send()
        .await
        .unwrap();
    assert_eq!(value_of(&client, SettingName::FargateTaskRetirementWaitPeriod).await.as_deref(), Some("14"));
}

#[tokio::test]
async fn values_a_setting_cannot_take_are_invalid_parameters() {
    let server = TestServer::start().await;
    let client = server.client();
    let msg = expect_code(
        client.put_account_setting().name(SettingName::ContainerInsights).value("maybe").send().await,
        "InvalidParameterException",
    );
    assert!(msg.contains("maybe"), "{msg}");
    expect_code(
        client.put_account_setting_default().name(SettingName::FargateTaskRetirementWaitPeriod).value("3").send().await,
        "InvalidParameterException",
    );
    expect_code(
        client.put_account_setting().name(SettingName::from("noSuchSetting")).value("enabled").send().await,
        "InvalidParameterException",
    );
    assert_eq!(value_of(&client, SettingName::ContainerInsights).await.as_deref(), Some("disabled"));
}

#[tokio::test]
async fn list_pages_at_most_ten_settings_at_a_time() {
    let server = TestServer::start().await;
    let client = server.client();
    let first = client.list_account_settings().effective_settings(true).send().await.unwrap();
    assert!(first.settings().len() <= 10);
    let all: Vec<_> = client
        .list_account_settings()
        .effective_settings(true)
        .into_paginator()
        .page_size(3)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let mut names: Vec<_> = all.iter().filter_map(|s| s.name().map(|n| n.as_str().to_string())).collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count, "no setting twice: {names:?}");
    assert!(names.contains(&"containerInsights".to_string()));
    expect_code(client.list_account_settings().max_results(11).send().await, "InvalidParameterException");
}

#[tokio::test]
async fn only_set_settings_are_listed_unless_effective_settings_are_asked_for() {
    let server = TestServer::start().await;
    let client = server.client();
    let set_only = client.list_account_settings().send().await.unwrap();
    assert!(set_only.settings().is_empty(), "nothing was set: {:?}", set_only.settings());
    client.put_account_setting().name(SettingName::ContainerInsights).value("enabled").send().await.unwrap();
    let set_only = client.list_account_settings().send().await.unwrap();
    let names: Vec<_> = set_only.settings().iter().filter_map(|s| s.name()).collect();
    assert_eq!(names, vec![&SettingName::ContainerInsights]);
    assert_eq!(set_only.settings()[0].r#type(), Some(&aws_sdk_ecs::types::SettingType::User));

    let effective = client.list_account_settings().effective_settings(true).max_results(10).into_paginator();
    let all: Vec<_> = effective.items().send().collect::<Result<Vec<_>, _>>().await.unwrap();
    assert!(all.len() > 5, "every setting's effective value: {all:?}");
    for s in &all {
        let expected = if s.name() == Some(&SettingName::GuardDutyActivate) {
            aws_sdk_ecs::types::SettingType::AwsManaged
        } else {
            aws_sdk_ecs::types::SettingType::User
        };
        assert_eq!(s.r#type(), Some(&expected), "{s:?}");
    }
    assert!(all.iter().any(|s| s.name() == Some(&SettingName::GuardDutyActivate)));
}
