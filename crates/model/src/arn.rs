//! ECS Amazon Resource Names: building them, and reading the short names users may pass instead.
//!
//! ECS accepts either a short identifier (`web`, `family:3`, a task ID) or a full ARN almost
//! everywhere; `Resource` is what either form names once the account and region are known.

use std::fmt;

/// The partition, region and account that ARNs are minted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnScope {
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl ArnScope {
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> Self {
        ArnScope { partition: "aws".into(), region: region.into(), account: account.into() }
    }

    fn prefix(&self) -> String {
        format!("arn:{}:ecs:{}:{}:", self.partition, self.region, self.account)
    }

    pub fn cluster(&self, name: &str) -> String {
        format!("{}cluster/{name}", self.prefix())
    }
    pub fn task_definition(&self, family: &str, revision: u32) -> String {
        format!("{}task-definition/{family}:{revision}", self.prefix())
    }
    pub fn container_instance(&self, cluster: &str, id: &str) -> String {
        format!("{}container-instance/{cluster}/{id}", self.prefix())
    }
    pub fn task(&self, cluster: &str, id: &str) -> String {
        format!("{}task/{cluster}/{id}", self.prefix())
    }
    pub fn container(&self, cluster: &str, task_id: &str, id: &str) -> String {
        format!("{}container/{cluster}/{task_id}/{id}", self.prefix())
    }
    pub fn service(&self, cluster: &str, name: &str) -> String {
        format!("{}service/{cluster}/{name}", self.prefix())
    }
    pub fn capacity_provider(&self, name: &str) -> String {
        format!("{}capacity-provider/{name}", self.prefix())
    }

    /// Parses a full ECS ARN of this scope into the resource it names.
    pub fn parse(&self, arn: &str) -> Result<Resource, ArnError> {
        let rest = arn.strip_prefix("arn:").ok_or(ArnError::NotAnArn)?;
        let mut parts = rest.splitn(5, ':');
        let (partition, service, region, account, resource) =
            match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(p), Some(s), Some(r), Some(a), Some(res)) => (p, s, r, a, res),
                _ => return Err(ArnError::NotAnArn),
            };
        if service != "ecs" {
            return Err(ArnError::NotEcs);
        }
        if partition != self.partition || region != self.region || account != self.account {
            return Err(ArnError::OtherScope);
        }
        let (kind, path) = resource.split_once('/').ok_or(ArnError::Malformed)?;
        let segs: Vec<&str> = path.split('/').collect();
        let nonempty = segs.iter().all(|s| !s.is_empty());
        if !nonempty {
            return Err(ArnError::Malformed);
        }
        Ok(match (kind, segs.as_slice()) {
            ("cluster", [name]) => Resource::Cluster((*name).into()),
            ("task-definition", [fr]) => {
                let (family, rev) = fr.rsplit_once(':').ok_or(ArnError::Malformed)?;
                let rev: u32 = rev.parse().map_err(|_| ArnError::Malformed)?;
                Resource::TaskDefinition { family: family.into(), revision: rev }
            }
            ("container-instance", [cluster, id]) => {
                Resource::ContainerInstance { cluster: Some((*cluster).into()), id: (*id).into() }
            }
            ("container-instance", [id]) => Resource::ContainerInstance { cluster: None, id: (*id).into() },
            ("task", [cluster, id]) => Resource::Task { cluster: Some((*cluster).into()), id: (*id).into() },
            ("task", [id]) => Resource::Task { cluster: None, id: (*id).into() },
            ("service", [cluster, name]) => {
                Resource::Service { cluster: Some((*cluster).into()), name: (*name).into() }
            }
            ("service", [name]) => Resource::Service { cluster: None, name: (*name).into() },
            ("capacity-provider", [name]) => Resource::CapacityProvider((*name).into()),
            _ => return Err(ArnError::Malformed),
        })
    }
}

/// What an ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Cluster(String),
    TaskDefinition { family: String, revision: u32 },
    ContainerInstance { cluster: Option<String>, id: String },
    Task { cluster: Option<String>, id: String },
    Service { cluster: Option<String>, name: String },
    CapacityProvider(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArnError {
    NotAnArn,
    NotEcs,
    OtherScope,
    Malformed,
}

impl fmt::Display for ArnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArnError::NotAnArn => "is not a valid ARN",
            ArnError::NotEcs => "is not an Amazon ECS ARN",
            ArnError::OtherScope => "belongs to another partition, region or account",
            ArnError::Malformed => "is not a well-formed ECS resource ARN",
        })
    }
}

/// The last path segment of an ARN or the identifier itself: what ECS calls the short name.
pub fn short_id(id_or_arn: &str) -> &str {
    if id_or_arn.starts_with("arn:") {
        id_or_arn.rsplit('/').next().unwrap_or(id_or_arn)
    } else {
        id_or_arn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = ArnScope::new("us-east-1", "000000000000");
        assert_eq!(s.parse(&s.cluster("default")), Ok(Resource::Cluster("default".into())));
        assert_eq!(
            s.parse(&s.task_definition("web", 3)),
            Ok(Resource::TaskDefinition { family: "web".into(), revision: 3 })
        );
        assert_eq!(
            s.parse(&s.task("prod", "abc")),
            Ok(Resource::Task { cluster: Some("prod".into()), id: "abc".into() })
        );
        assert_eq!(s.parse("arn:aws:ecs:eu-west-1:000000000000:cluster/x"), Err(ArnError::OtherScope));
        assert_eq!(s.parse("arn:aws:ecs:us-east-1:000000000000:cluster/"), Err(ArnError::Malformed));
        assert_eq!(s.parse("nope"), Err(ArnError::NotAnArn));
        assert_eq!(short_id("arn:aws:ecs:us-east-1:0:task/c/abc"), "abc");
    }
}
