//! Task placement: the strategies and constraints CreateService and RunTask take, and the
//! `memberOf` constraints a task definition may carry.
//!
//! `check_placement` is shared by every request that places tasks; it answers with
//! InvalidParameterException like those APIs do. Task definition constraints are judged at
//! RegisterTaskDefinition and so answer with ClientException.

use super::{RuleError, RuleErrorKind};
use crate::{PlacementConstraint, PlacementStrategy, RegisterTaskDefinitionRequest};

/// "You can specify a maximum of five strategy rules for each service."
pub const MAX_STRATEGIES: usize = 5;
/// Constraints per task, counting those in the task definition and those given at launch.
pub const MAX_CONSTRAINTS: usize = 10;
/// The longest cluster query language expression a constraint may carry.
pub const MAX_EXPRESSION_LEN: usize = 2000;

/// Placement strategies and constraints as CreateService, UpdateService and RunTask accept them.
pub fn check_placement(strategies: &[PlacementStrategy], constraints: &[PlacementConstraint]) -> Result<(), RuleError> {
    if strategies.len() > MAX_STRATEGIES {
        return Err(RuleError::invalid_parameter(format!(
            "Invalid 'placementStrategy' setting. At most {MAX_STRATEGIES} placement strategies \
             are allowed."
        )));
    }
    for strategy in strategies {
        check_strategy(strategy)?;
    }
    check_constraint_count(constraints.len(), RuleErrorKind::InvalidParameter)?;
    for constraint in constraints {
        let expression = constraint.expression.as_deref();
        match constraint.r#type.as_deref() {
            None => return Err(missing_constraint_type(RuleErrorKind::InvalidParameter)),
            // distinctInstance takes no expression at all, not even an empty one.
            Some("distinctInstance") if expression.is_some() => {
                return Err(RuleError::invalid_parameter("distinctInstance expression should not be specified."))
            }
            Some("memberOf") => check_member_of(expression, RuleErrorKind::InvalidParameter)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_strategy(strategy: &PlacementStrategy) -> Result<(), RuleError> {
    let field = strategy.field.as_deref();
    let shown = field.unwrap_or("null");
    match strategy.r#type.as_deref() {
        None => Err(RuleError::invalid_parameter(
            "Invalid 'placementStrategy' setting. The placement strategy type must be specified.",
        )),
        Some("binpack") if !matches!(field, Some("cpu" | "memory")) => {
            Err(RuleError::invalid_parameter(format!("binpack field '{shown}' is invalid")))
        }
        Some("spread") if !field.is_some_and(is_spread_field) => {
            Err(RuleError::invalid_parameter(format!("spread field '{shown}' is invalid")))
        }
        // random ignores its field, as the API reference says ("this field is not used").
        _ => Ok(()),
    }
}

/// `instanceId` (or its synonym `host`), or an attribute such as
/// `attribute:ecs.availability-zone`.
fn is_spread_field(field: &str) -> bool {
    matches!(field, "instanceId" | "host") || field.strip_prefix("attribute:").is_some_and(|a| !a.is_empty())
}

fn check_constraint_count(count: usize, kind: RuleErrorKind) -> Result<(), RuleError> {
    if count > MAX_CONSTRAINTS {
        return Err(RuleError {
            kind,
            message: format!(
                "Invalid 'placementConstraints' setting. At most {MAX_CONSTRAINTS} placement \
                 constraints are allowed."
            ),
        });
    }
    Ok(())
}

fn missing_constraint_type(kind: RuleErrorKind) -> RuleError {
    RuleError {
        kind,
        message: "Invalid 'placementConstraints' setting. The placement constraint type must be \
                  specified."
            .into(),
    }
}

fn check_member_of(expression: Option<&str>, kind: RuleErrorKind) -> Result<(), RuleError> {
    let message = match expression {
        None | Some("") => "memberOf expression should be specified.".to_string(),
        Some(e) if e.chars().count() > MAX_EXPRESSION_LEN => format!(
            "Invalid 'placementConstraints' setting. The expression can be at most \
             {MAX_EXPRESSION_LEN} characters."
        ),
        Some(_) => return Ok(()),
    };
    Err(RuleError { kind, message })
}

/// A task definition may only carry `memberOf` constraints (the generated enum check sees to the
/// type's value); each needs an expression.
pub(crate) fn check_task_definition_constraints(req: &RegisterTaskDefinitionRequest) -> Result<(), RuleError> {
    let constraints = req.placement_constraints.as_deref().unwrap_or_default();
    check_constraint_count(constraints.len(), RuleErrorKind::Client)?;
    for constraint in constraints {
        if constraint.r#type.is_none() {
            return Err(missing_constraint_type(RuleErrorKind::Client));
        }
        check_member_of(constraint.expression.as_deref(), RuleErrorKind::Client)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::TaskDefinitionPlacementConstraint;

    fn strategy(kind: Option<&str>, field: Option<&str>) -> PlacementStrategy {
        PlacementStrategy { r#type: kind.map(Into::into), field: field.map(Into::into) }
    }

    fn constraint(kind: Option<&str>, expression: Option<&str>) -> PlacementConstraint {
        PlacementConstraint { r#type: kind.map(Into::into), expression: expression.map(Into::into) }
    }

    fn invalid(result: Result<(), RuleError>, message: &str) {
        assert_eq!(result, Err(RuleError::invalid_parameter(message)));
    }

    #[test]
    fn strategy_types_and_fields() {
        let cases: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
            (Some("binpack"), Some("cpu"), None),
            (Some("binpack"), Some("memory"), None),
            (Some("spread"), Some("instanceId"), None),
            (Some("spread"), Some("host"), None),
            (Some("spread"), Some("attribute:ecs.availability-zone"), None),
            (Some("random"), None, None),
            (Some("random"), Some("anything"), None),
            (Some("binpack"), Some("disk"), Some("binpack field 'disk' is invalid")),
            (Some("binpack"), None, Some("binpack field 'null' is invalid")),
            (Some("spread"), Some("attribute:"), Some("spread field 'attribute:' is invalid")),
            (Some("spread"), Some("cpu"), Some("spread field 'cpu' is invalid")),
            (Some("spread"), None, Some("spread field 'null' is invalid")),
            (
                None,
                Some("cpu"),
                Some(
                    "Invalid 'placementStrategy' setting. The placement strategy type must be \
                     specified.",
                ),
            ),
        ];
        for (kind, field, expected) in cases {
            let result = check_placement(&[strategy(*kind, *field)], &[]);
            match expected {
                None => assert_eq!(result, Ok(()), "{kind:?} {field:?}"),
                Some(msg) => invalid(result, msg),
            }
        }
    }

    #[test]
    fn at_most_five_strategies() {
        let five = vec![strategy(Some("spread"), Some("host")); 5];
        assert_eq!(check_placement(&five, &[]), Ok(()));
        let six = vec![strategy(Some("spread"), Some("host")); 6];
        invalid(
            check_placement(&six, &[]),
            "Invalid 'placementStrategy' setting. At most 5 placement strategies are allowed.",
        );
    }

    #[test]
    fn constraint_types_and_expressions() {
        let long = "a".repeat(2001);
        let max = "a".repeat(2000);
        let cases: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
            (Some("distinctInstance"), None, None),
            (Some("memberOf"), Some("attribute:ecs.instance-type =~ t2.*"), None),
            (Some("memberOf"), Some(max.as_str()), None),
            (Some("distinctInstance"), Some(""), Some("distinctInstance expression should not be specified.")),
            (
                Some("distinctInstance"),
                Some("attribute:x == y"),
                Some("distinctInstance expression should not be specified."),
            ),
            (Some("memberOf"), None, Some("memberOf expression should be specified.")),
            (Some("memberOf"), Some(""), Some("memberOf expression should be specified.")),
            (
                Some("memberOf"),
                Some(long.as_str()),
                Some(
                    "Invalid 'placementConstraints' setting. The expression can be at most 2000 \
                     characters.",
                ),
            ),
            (
                None,
                None,
                Some(
                    "Invalid 'placementConstraints' setting. The placement constraint type must be \
                     specified.",
                ),
            ),
        ];
        for (kind, expression, expected) in cases {
            let result = check_placement(&[], &[constraint(*kind, *expression)]);
            match expected {
                None => assert_eq!(result, Ok(()), "{kind:?}"),
                Some(msg) => invalid(result, msg),
            }
        }
    }

    #[test]
    fn at_most_ten_constraints() {
        let ten = vec![constraint(Some("distinctInstance"), None); 10];
        assert_eq!(check_placement(&[], &ten), Ok(()));
        let eleven = vec![constraint(Some("distinctInstance"), None); 11];
        invalid(
            check_placement(&[], &eleven),
            "Invalid 'placementConstraints' setting. At most 10 placement constraints are allowed.",
        );
    }

    #[test]
    fn task_definition_constraints_are_client_errors() {
        let td = |constraints: Vec<TaskDefinitionPlacementConstraint>| {
            let mut req = ec2_task(vec![container("web")]);
            req.placement_constraints = Some(constraints);
            req
        };
        let member_of = |e: Option<&str>| TaskDefinitionPlacementConstraint {
            r#type: Some("memberOf".into()),
            expression: e.map(Into::into),
        };
        assert_ok(&td(vec![member_of(Some("attribute:ecs.os-type == linux"))]));
        assert_client(&td(vec![member_of(None)]), "memberOf expression should be specified.");
        assert_client(
            &td(vec![TaskDefinitionPlacementConstraint { r#type: None, expression: Some("x".into()) }]),
            "Invalid 'placementConstraints' setting. The placement constraint type must be \
             specified.",
        );
        assert_client(
            &td(vec![member_of(Some("attribute:a == b")); 11]),
            "Invalid 'placementConstraints' setting. At most 10 placement constraints are allowed.",
        );
    }
}
