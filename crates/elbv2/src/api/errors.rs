//! ELB's error codes (the model's `error.code`, which SDKs map to their exception classes) with
//! messages that name what was wrong.

use flotilla_query::QueryError;

pub fn validation(message: impl Into<String>) -> QueryError {
    QueryError::new("ValidationError", message)
}

pub fn lb_not_found() -> QueryError {
    QueryError::new("LoadBalancerNotFound", "One or more load balancers not found")
}

pub fn tg_not_found() -> QueryError {
    QueryError::new("TargetGroupNotFound", "One or more target groups not found")
}

pub fn listener_not_found() -> QueryError {
    QueryError::new("ListenerNotFound", "One or more listeners not found")
}

pub fn rule_not_found() -> QueryError {
    QueryError::new("RuleNotFound", "One or more rules not found")
}

pub fn unsupported_protocol(what: &str, protocol: &str) -> QueryError {
    QueryError::new(
        "UnsupportedProtocol",
        format!("Protocol '{protocol}' is not supported for {what} by Flotilla's load balancers: use HTTP or TCP."),
    )
}

pub fn incompatible(message: impl Into<String>) -> QueryError {
    QueryError::new("IncompatibleProtocols", message)
}

pub fn invalid_config(message: impl Into<String>) -> QueryError {
    QueryError::new("InvalidConfigurationRequest", message)
}

pub fn invalid_target(message: impl Into<String>) -> QueryError {
    QueryError::new("InvalidTarget", message)
}

/// A value outside its allowed set, worded as AWS's enum validation.
pub fn not_one_of(name: &str, value: &str, allowed: &[&str]) -> QueryError {
    validation(format!(
        "1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        allowed.join(", ")
    ))
}

/// An integer outside its range.
pub fn out_of_range(name: &str, value: i64, min: i64, max: i64) -> QueryError {
    let bound =
        if value < min { format!("greater than or equal to {min}") } else { format!("less than or equal to {max}") };
    validation(format!(
        "1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: Member must have value {bound}"
    ))
}

/// An ARN of the wrong shape for what it names.
pub fn bad_arn(arn: &str, what: &str) -> QueryError {
    validation(format!("'{arn}' is not a valid {what} ARN"))
}
