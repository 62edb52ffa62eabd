//! SigV4-signed calls to the query-protocol APIs a server serves beside ECS (Auto Scaling, EC2),
//! for the benchmarks that set up Auto Scaling groups and capacity providers.

use std::time::SystemTime;

use anyhow::bail;
use flotilla_sigv4::{Credentials, SigningParams};

/// One query-protocol call signed for `service` (`ec2`, `autoscaling`); returns the XML answer.
pub async fn call(
    http: &reqwest::Client,
    endpoint: &str,
    creds: &Credentials,
    service: &str,
    version: &str,
    action: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut form: Vec<(&str, &str)> = vec![("Action", action), ("Version", version)];
    form.extend_from_slice(params);
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let body = form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&");
    let mut req = http::Request::post(format!("{endpoint}/"))
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(body.clone().into_bytes())?;
    let params = SigningParams { credentials: creds, region: crate::seed::REGION, service, time: SystemTime::now() };
    flotilla_sigv4::sign_request(&mut req, &params).map_err(|e| anyhow::anyhow!("signing: {e}"))?;
    let mut out = http.post(format!("{endpoint}/")).body(body);
    for (k, v) in req.headers() {
        out = out.header(k.as_str(), v.as_bytes());
    }
    let resp = out.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{service} {action} answered {status}: {text}");
    }
    Ok(text)
}

/// The text of the first `<tag>` in `xml`.
pub fn text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// A launch template for `instance_type` whose hosts join `cluster`, and an Auto Scaling group of
/// `desired` hosts (at most `max`) from it, spread over three zones; returns the template's id.
pub async fn create_group(
    http: &reqwest::Client,
    endpoint: &str,
    creds: &Credentials,
    name: &str,
    instance_type: &str,
    cluster: &str,
    (desired, max): (u32, u32),
) -> anyhow::Result<String> {
    use base64::Engine;
    let user_data = base64::engine::general_purpose::STANDARD
        .encode(format!("#!/bin/bash\necho ECS_CLUSTER={cluster} >> /etc/ecs/ecs.config\n"));
    let lt = call(
        http,
        endpoint,
        creds,
        "ec2",
        "2016-11-15",
        "CreateLaunchTemplate",
        &[
            ("LaunchTemplateName", name),
            ("LaunchTemplateData.InstanceType", instance_type),
            ("LaunchTemplateData.UserData", &user_data),
        ],
    )
    .await?;
    let lt_id =
        text(&lt, "launchTemplateId").ok_or_else(|| anyhow::anyhow!("no launchTemplateId in {lt}"))?.to_string();
    let (desired, max) = (desired.to_string(), max.to_string());
    call(
        http,
        endpoint,
        creds,
        "autoscaling",
        "2011-01-01",
        "CreateAutoScalingGroup",
        &[
            ("AutoScalingGroupName", name),
            ("LaunchTemplate.LaunchTemplateId", &lt_id),
            ("MinSize", "0"),
            ("MaxSize", &max),
            ("DesiredCapacity", &desired),
            ("AvailabilityZones.member.1", "us-east-1a"),
            ("AvailabilityZones.member.2", "us-east-1b"),
            ("AvailabilityZones.member.3", "us-east-1c"),
            ("NewInstancesProtectedFromScaleIn", "true"),
        ],
    )
    .await?;
    Ok(lt_id)
}
