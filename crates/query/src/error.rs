//! Query-protocol errors: one error type for every service, written in the document its dialect
//! expects. Auto Scaling and ELBv2 answer
//! `<ErrorResponse><Error><Type>Sender</Type><Code/><Message/></Error><RequestId/></ErrorResponse>`;
//! EC2 answers `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`.
//! SDKs map the code to their exception classes, so the code is the contract.

use crate::xml::Xml;

/// Which flavour of the query protocol a service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Auto Scaling, ELBv2, ...: `<XResponse xmlns><XResult>..</XResult><ResponseMetadata>`,
    /// lists as `<member>`.
    Query { xmlns: &'static str },
    /// EC2: `<XResponse xmlns><requestId>..` with the result inline, lists as `<item>`.
    Ec2,
}

pub const EC2_XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

impl Dialect {
    /// The element each list entry is wrapped in.
    pub fn list_item(&self) -> &'static str {
        match self {
            Dialect::Query { .. } => "member",
            Dialect::Ec2 => "item",
        }
    }
}

/// An error answered to a client: its code, message and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub code: &'static str,
    pub message: String,
    /// 400 for the client's mistakes, 500 (and `Receiver`) for the server's.
    pub status: u16,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for QueryError {}

impl QueryError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        QueryError { code, message: message.into(), status: 400 }
    }

    /// A fault on the server's side (HTTP 500).
    pub fn server(code: &'static str, message: impl Into<String>) -> Self {
        QueryError { code, message: message.into(), status: 500 }
    }

    /// A required parameter is absent, worded as the dialect words it.
    pub fn missing(dialect: Dialect, name: &str) -> Self {
        match dialect {
            Dialect::Ec2 => Self::new("MissingParameter", format!("The request must contain the parameter {name}")),
            Dialect::Query { .. } => Self::new(
                "ValidationError",
                format!(
                    "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                    lower_first(name)
                ),
            ),
        }
    }

    /// A parameter's value is not of its type (`expected`: `Integer`, `Boolean`, ...).
    pub fn malformed(dialect: Dialect, name: &str, value: &str, expected: &str) -> Self {
        match dialect {
            Dialect::Ec2 => Self::new(
                "InvalidParameterValue",
                format!("Value ({value}) for parameter {name} is invalid. Expected: '{expected}'."),
            ),
            Dialect::Query { .. } => Self::new(
                "ValidationError",
                format!(
                    "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: Member must be of type {expected}",
                    lower_first(name)
                ),
            ),
        }
    }

    /// A value of the right type the service still refuses.
    pub fn invalid(dialect: Dialect, message: impl Into<String>) -> Self {
        match dialect {
            Dialect::Ec2 => Self::new("InvalidParameterValue", message),
            Dialect::Query { .. } => Self::new("ValidationError", message),
        }
    }

    /// The error document, as the dialect writes it.
    pub fn to_xml(&self, dialect: Dialect, request_id: &str) -> String {
        let mut x = Xml::new();
        match dialect {
            Dialect::Query { xmlns } => {
                x.open_ns("ErrorResponse", xmlns);
                x.open("Error");
                x.leaf("Type", if self.status >= 500 { "Receiver" } else { "Sender" });
                x.leaf("Code", self.code);
                x.leaf("Message", &self.message);
                x.close("Error");
                x.leaf("RequestId", request_id);
                x.close("ErrorResponse");
            }
            Dialect::Ec2 => {
                x.open("Response");
                x.open("Errors");
                x.open("Error");
                x.leaf("Code", self.code);
                x.leaf("Message", &self.message);
                x.close("Error");
                x.close("Errors");
                x.leaf("RequestID", request_id);
                x.close("Response");
            }
        }
        x.finish()
    }

    /// The whole HTTP answer.
    pub fn to_response(&self, dialect: Dialect, request_id: &str) -> http::Response<String> {
        let status = http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::BAD_REQUEST);
        crate::xml::http_response(status, request_id, self.to_xml(dialect, request_id))
    }
}

/// `AutoScalingGroupName` -> `autoScalingGroupName`, as AWS's validation messages name members.
fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AS: Dialect = Dialect::Query { xmlns: "http://autoscaling.amazonaws.com/doc/2011-01-01/" };

    #[test]
    fn query_errors_are_sender_or_receiver() {
        let xml = QueryError::new("ValidationError", "bad <x> & 'y'").to_xml(AS, "rid");
        assert_eq!(
            xml,
            "<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error><Type>Sender</Type>\
             <Code>ValidationError</Code><Message>bad &lt;x&gt; &amp; 'y'</Message></Error>\
             <RequestId>rid</RequestId></ErrorResponse>"
        );
        let fault = QueryError::server("InternalFailure", "oops");
        assert!(fault.to_xml(AS, "r").contains("<Type>Receiver</Type>"));
        assert_eq!(fault.to_response(AS, "r").status(), 500);
    }

    #[test]
    fn ec2_errors_have_their_own_document() {
        let e = QueryError::missing(Dialect::Ec2, "LaunchTemplateName");
        assert_eq!(e.code, "MissingParameter");
        let r = e.to_response(Dialect::Ec2, "rid");
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.body(),
            "<Response><Errors><Error><Code>MissingParameter</Code><Message>The request must contain the parameter \
             LaunchTemplateName</Message></Error></Errors><RequestID>rid</RequestID></Response>"
        );
    }

    #[test]
    fn missing_parameters_are_named_in_each_dialect() {
        let e = QueryError::missing(AS, "AutoScalingGroupName");
        assert_eq!(e.code, "ValidationError");
        assert!(e.message.contains("'autoScalingGroupName'"), "{}", e.message);
        let e = QueryError::malformed(Dialect::Ec2, "MaxCount", "x", "Integer");
        assert_eq!(e.code, "InvalidParameterValue");
        assert!(e.message.contains("MaxCount"));
    }
}
