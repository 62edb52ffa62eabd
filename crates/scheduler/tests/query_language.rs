//! The cluster query language against the ECS documentation: every documented example, every
//! operator with its word spelling, the compound forms, and the errors (with their columns) that
//! the API turns into InvalidParameterException.

use flotilla_scheduler::{parse, Instance};

/// An instance like the documentation's examples: a g2 in us-east-1a running one task of
/// `service:production`, agent 1.14.4, registered 2018-02-12.
fn g2() -> Instance {
    Instance {
        arn: "arn:aws:ecs:us-east-1:000000000000:container-instance/default/g2".into(),
        ec2_instance_id: "i-abcd1234".into(),
        agent_connected: true,
        agent_version: Some("1.14.4".into()),
        registered_at_ms: 1_518_393_600_000 + 3_600_000, // 2018-02-12T01:00:00Z
        attributes: vec![
            ("ecs.instance-type".into(), Some("g2.2xlarge".into())),
            ("ecs.availability-zone".into(), Some("us-east-1a".into())),
            ("stack".into(), Some("prod".into())),
            ("cores".into(), Some("10".into())),
            ("ecs.capability.external".into(), None),
        ],
        running_tasks_count: 1,
        task_groups: vec![("service:production".into(), 1)],
        ..Instance::default()
    }
}

/// A t2.small in us-east-1d with no tasks, a disconnected agent 1.20.0, registered 2019-06-01, and
/// no `stack` attribute.
fn t2() -> Instance {
    Instance {
        arn: "arn:aws:ecs:us-east-1:000000000000:container-instance/default/t2".into(),
        ec2_instance_id: "i-wxyx7890".into(),
        agent_connected: false,
        agent_version: Some("1.20.0".into()),
        registered_at_ms: 1_559_347_200_000, // 2019-06-01T00:00:00Z
        attributes: vec![
            ("ecs.instance-type".into(), Some("t2.small".into())),
            ("ecs.availability-zone".into(), Some("us-east-1d".into())),
            ("cores".into(), Some("9".into())),
        ],
        running_tasks_count: 0,
        task_groups: vec![],
        ..Instance::default()
    }
}

/// Asserts every row, reporting all the rows that disagree at once.
fn check(table: &[(&str, (bool, bool))]) {
    let wrong: Vec<String> = table
        .iter()
        .filter(|(expr, want)| selects(expr) != *want)
        .map(|(expr, want)| format!("{expr}: got {:?}, want {want:?}", selects(expr)))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Which of (g2, t2) the expression selects.
fn selects(expr: &str) -> (bool, bool) {
    let e = parse(expr).unwrap_or_else(|err| panic!("{expr:?} did not parse: {err}"));
    (e.eval(&g2()), e.eval(&t2()))
}

#[test]
fn documented_examples() {
    let table = [
        ("attribute:ecs.instance-type == t2.small", (false, true)),
        ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", (true, false)),
        ("attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d", (true, false)),
        ("task:group == service:production", (true, false)),
        ("not(task:group == database)", (true, true)),
        ("runningTasksCount == 1", (true, false)),
        ("agentVersion < 1.14.5", (true, false)),
        ("registeredAt < 2018-02-13", (true, false)),
        ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", (true, true)),
        ("attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone == us-east-1a", (false, false)),
        ("attribute:stack == prod", (true, false)),
        // "instances with the custom attribute stack unless the value is prod": t2 has no stack.
        ("attribute:stack != prod", (false, false)),
        ("attribute:ecs.instance-type in [t2.small, t2.medium]", (false, true)),
    ];
    check(&table);
}

#[test]
fn every_operator_and_its_word_spelling() {
    let table = [
        ("attribute:cores == 10", (true, false)),
        ("attribute:cores equals 10", (true, false)),
        ("attribute:cores != 10", (false, true)),
        ("attribute:cores not_equals 10", (false, true)),
        // Numbers compare as numbers: 10 > 9 although "10" < "9" as text.
        ("attribute:cores > 9", (true, false)),
        ("attribute:cores greater_than 9", (true, false)),
        ("attribute:cores >= 9", (true, true)),
        ("attribute:cores greater_than_equal 10", (true, false)),
        ("attribute:cores < 10", (false, true)),
        ("attribute:cores less_than 10", (false, true)),
        ("attribute:cores <= 10", (true, true)),
        ("attribute:cores less_than_equal 9", (false, true)),
        ("attribute:stack exists", (true, false)),
        ("attribute:stack !exists", (false, true)),
        ("attribute:stack not_exists", (false, true)),
        ("attribute:ecs.capability.external exists", (true, false)),
        ("attribute:ecs.availability-zone in [us-east-1d, eu-west-1a]", (false, true)),
        ("attribute:ecs.availability-zone !in [us-east-1d]", (true, false)),
        ("attribute:ecs.availability-zone not_in [us-east-1d]", (true, false)),
        ("attribute:ecs.instance-type =~ t2\\..*", (false, true)),
        ("attribute:ecs.instance-type matches g2.*", (true, false)),
        ("attribute:ecs.instance-type !~ g2.*", (false, true)),
        ("attribute:ecs.instance-type not_matches g2.*", (false, true)),
        // A regex must match the whole value; a leading `*` is a wildcard.
        ("attribute:ecs.instance-type =~ 2xlarge", (false, false)),
        ("attribute:ecs.instance-type =~ *.2xlarge", (true, false)),
        ("attribute:ecs.instance-type =~ (g2|t2)\\.(small|2xlarge)", (true, true)),
        ("attribute:ecs.availability-zone =~ us-east-1[a-c]", (true, false)),
        // Bare patterns keep balanced groups, classes and counted repeats; an unbalanced `)`
        // closes the expression's parenthesis.
        ("attribute:cores =~ [0-9]{1,2}", (true, true)),
        ("not(attribute:ecs.instance-type =~ g2.*)", (false, true)),
        ("(attribute:ecs.instance-type =~ (g2|t2)\\.2xlarge) or attribute:cores == 9", (true, true)),
        // Comparisons on a missing attribute are false; !exists holds.
        ("attribute:nope == x", (false, false)),
        ("attribute:nope != x", (false, false)),
        ("attribute:nope not_in [x]", (false, false)),
        ("attribute:nope !~ x", (false, false)),
        ("attribute:nope !exists", (true, true)),
        ("ec2InstanceId == i-abcd1234", (true, false)),
        ("ec2InstanceId != i-abcd1234", (false, true)),
        ("ec2InstanceId =~ i-wx.*", (false, true)),
        ("ec2InstanceId !~ i-wx.*", (true, false)),
        ("ec2InstanceId not_in [i-abcd1234]", (false, true)),
        ("agentConnected == false", (false, true)),
        ("agentConnected != true", (false, true)),
        ("agentConnected in [TRUE]", (true, false)),
        ("agentConnected =~ tr.*", (true, false)),
        ("agentVersion >= 1.14.4", (true, true)),
        ("agentVersion > 1.9.0", (true, true)),
        ("agentVersion <= 1.14.4", (true, false)),
        ("agentVersion == 1.20.0", (false, true)),
        ("agentVersion != 1.20.0", (true, false)),
        // registeredAt compares against the span its argument names: a date is a whole day.
        ("registeredAt == 2018-02-12", (true, false)),
        ("registeredAt != 2018-02-12", (false, true)),
        ("registeredAt > 2018-02-12", (false, true)),
        ("registeredAt >= 2018-02-12", (true, true)),
        ("registeredAt <= 2018-02-12", (true, false)),
        ("registeredAt < 2018-02-12T01:00:01Z", (true, false)),
        ("registeredAt == 2018-02-12T01:00:00+00:00", (true, false)),
        ("registeredAt == 2018-02-12T02:00:00+01:00", (true, false)),
        ("registeredAt > 2018-02-12T01:00:00", (false, true)),
        ("runningTasksCount > 0", (true, false)),
        ("runningTasksCount >= 0", (true, true)),
        ("runningTasksCount < 1", (false, true)),
        ("runningTasksCount <= 1", (true, true)),
        ("runningTasksCount != 1", (false, true)),
        ("task:group exists", (true, false)),
        ("task:group !exists", (false, true)),
        ("task:group != service:production", (false, true)),
        ("task:group in [service:production, database]", (true, false)),
        ("task:group not_in [database]", (true, true)),
        ("task:group =~ service:.*", (true, false)),
        ("task:group !~ service:.*", (false, true)),
    ];
    check(&table);
}

#[test]
fn compound_expressions_precedence_and_spellings() {
    let table = [
        // `and` binds tighter than `or`.
        ("agentConnected == true or runningTasksCount == 0 and attribute:stack exists", (true, false)),
        ("(agentConnected == true or runningTasksCount == 0) and attribute:stack exists", (true, false)),
        ("(agentConnected == false or runningTasksCount == 1) and attribute:cores == 9", (false, true)),
        ("agentConnected == false || runningTasksCount == 1 && attribute:cores == 9", (false, true)),
        ("!(agentConnected == true)", (false, true)),
        ("! agentConnected == true", (false, true)),
        ("not agentConnected == true", (false, true)),
        ("not not agentConnected == true", (true, false)),
        ("NOT(task:group == database) AND attribute:cores > 9", (true, false)),
        ("((attribute:cores == 9))", (false, true)),
        ("attribute:cores==9&&agentConnected==false", (false, true)),
        ("EC2INSTANCEID == i-abcd1234 Or Task:Group exists", (true, false)),
        // Values are case-sensitive.
        ("attribute:stack == PROD", (false, false)),
        ("attribute:ecs.availability-zone in [\"us-east-1a\", 'us-east-1d']", (true, true)),
        ("attribute:ecs.availability-zone in[us-east-1a,us-east-1d]", (true, true)),
        ("  attribute:cores  ==  10  ", (true, false)),
    ];
    check(&table);
}

#[test]
fn quoted_values_may_hold_spaces_and_delimiters() {
    let mut i = g2();
    i.attributes.push(("team".into(), Some("data (core), west".into())));
    assert!(parse("attribute:team == 'data (core), west'").unwrap().eval(&i));
    assert!(parse("attribute:team =~ \"data \\(core\\).*\"").unwrap().eval(&i));
    // A valueless attribute equals the empty string.
    assert!(parse("attribute:ecs.capability.external == ''").unwrap().eval(&i));
}

/// (expression, column, a fragment of the message)
#[test]
fn errors_point_at_the_column() {
    let table: &[(&str, usize, &str)] = &[
        ("", 1, "expression is empty"),
        ("   ", 1, "expression is empty"),
        ("attribute:ecs.instance-type = t2.small", 29, "did you mean '=='"),
        ("attribute: == x", 11, "attribute name missing"),
        ("instanceType == t2.small", 1, "unknown subject 'instanceType'"),
        ("ec2InstanceId > i-1", 15, "operator '>' does not apply to ec2InstanceId"),
        ("runningTasksCount exists", 19, "operator 'exists' does not apply to runningTasksCount"),
        ("task:group > a", 12, "does not apply to task:group"),
        ("runningTasksCount > many", 21, "whole number, found 'many'"),
        ("registeredAt < yesterday", 16, "registeredAt takes a date"),
        ("registeredAt < 2018-02-30", 16, "registeredAt takes a date"),
        ("agentConnected == maybe", 19, "agentConnected is true or false"),
        ("attribute:a in [x, y", 21, "expected ',' or ']'"),
        ("attribute:a in x", 16, "expected '['"),
        ("attribute:a in []", 17, "is empty"),
        ("attribute:a in [x,]", 19, "expected a value after ','"),
        ("(attribute:a == b", 18, "expected ')' to close the '(' at column 1"),
        ("attribute:a == b c", 18, "unexpected 'c'"),
        ("attribute:a == b)", 17, "unexpected ')'"),
        ("attribute:a == b and", 21, "expected a condition"),
        ("attribute:a == b andy", 18, "unexpected 'andy'"),
        ("attribute:a ==", 15, "expected a value after '=='"),
        ("attribute:a", 12, "expected an operator after 'attribute:a'"),
        ("attribute:a ~= b", 13, "expected an operator"),
        ("attribute:a == 'abc", 16, "never closed"),
        ("attribute:a =~ 'x('", 16, "invalid pattern 'x('"),
        ("attribute:a == b or or", 21, "expected a condition"),
        ("not", 1, "'not' must be followed by a condition"),
        ("== b", 1, "expected a condition"),
        // Columns count characters, not bytes.
        ("attribute:zoné == b c", 21, "unexpected 'c'"),
    ];
    let mut wrong = Vec::new();
    for (expr, column, fragment) in table {
        match parse(expr) {
            Ok(_) => wrong.push(format!("{expr:?} parsed")),
            Err(err) if err.column() != *column || !err.message().contains(fragment) => {
                wrong.push(format!("{expr:?}: {err}"))
            }
            Err(err) => assert!(err.to_string().ends_with(&format!("at column {column}")), "{err}"),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn hostile_input_is_refused_not_crashed() {
    let deep = format!("{}attribute:a == b{}", "(".repeat(200), ")".repeat(200));
    assert!(parse(&deep).unwrap_err().message().contains("nests deeper"));
    let nots = format!("{}attribute:a == b", "not ".repeat(200));
    assert!(parse(&nots).unwrap_err().message().contains("nests deeper"));
    let long = format!("attribute:a in [{}]", vec!["x"; 1200].join(","));
    assert_eq!(parse(&long).unwrap_err().column(), 2001);
}

#[test]
fn source_and_display_keep_the_text() {
    let e = parse("attribute:a == b").unwrap();
    assert_eq!(e.source(), "attribute:a == b");
    assert_eq!(e.to_string(), "attribute:a == b");
}
