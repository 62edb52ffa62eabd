//! A recursive-descent parser for the cluster query language. It reads the text once, straight into
//! the AST, and every error names what was expected, what was found, and the 1-based column (in
//! characters) where it was found, so the API can answer an InvalidParameterException that points
//! at the mistake.
//!
//! Grammar (keywords and word operators are case-insensitive; values are case-sensitive):
//!
//! ```text
//! expr       = and_expr { ("or" | "||") and_expr }
//! and_expr   = unary { ("and" | "&&") unary }
//! unary      = ("not" | "!") unary | "(" expr ")" | comparison
//! comparison = subject operator [argument]
//! subject    = "attribute:" NAME | "task:group" | "ec2InstanceId" | "agentConnected"
//!            | "agentVersion" | "registeredAt" | "runningTasksCount"
//! operator   = "==" | "equals" | "!=" | "not_equals" | ">" | "greater_than" | ">=" | "greater_than_equal"
//!            | "<" | "less_than" | "<=" | "less_than_equal" | "exists" | "!exists" | "not_exists"
//!            | "in" | "!in" | "not_in" | "=~" | "matches" | "!~" | "not_matches"
//! argument   = value | "[" value { "," value } "]"          (lists for in / not_in only)
//! value      = 'quoted' | "quoted" | bare                     (bare: up to space , ( ) [ ] && ||)
//! ```

use std::fmt;

use super::ast::{CmpOp, Expr, Leaf, Node, Pred, Subject};
use super::value::{compile_pattern, parse_time, Literal};

/// ECS caps a memberOf expression at 2000 characters; ListContainerInstances filters share the cap.
pub const MAX_EXPRESSION_CHARS: usize = 2000;

/// Nesting beyond this is refused rather than risking the parser's stack on hostile input.
const MAX_DEPTH: usize = 64;

/// A malformed expression: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}")]
pub struct ParseError {
    column: usize,
    message: String,
}

impl ParseError {
    /// 1-based column, counted in characters, of the offending token.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What was expected and what was found, without the column.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Parses a cluster query expression such as `attribute:ecs.instance-type =~ t2.* and not(task:group
/// == database)`.
pub fn parse(source: &str) -> Result<Expr, ParseError> {
    if source.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(ParseError {
            column: MAX_EXPRESSION_CHARS + 1,
            message: format!("expression is longer than {MAX_EXPRESSION_CHARS} characters"),
        });
    }
    let mut p = Parser { src: source, pos: 0 };
    p.skip_ws();
    if p.at_end() {
        return Err(p.error(0, "expression is empty".to_string()));
    }
    let root = p.or_expr(0)?;
    p.skip_ws();
    if !p.at_end() {
        let msg = if p.peek() == Some(b')') {
            "unexpected ')' with no '(' open".to_string()
        } else {
            format!("unexpected {}: expected 'and', 'or' or the end of the expression", p.describe_here())
        };
        return Err(p.error(p.pos, msg));
    }
    Ok(Expr { root, source: source.into() })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Exists => "exists",
            Op::NotExists => "!exists",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Matches => "=~",
            Op::NotMatches => "!~",
        })
    }
}

const ORDERING_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le];
const MATCHING_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::In, Op::NotIn, Op::Matches, Op::NotMatches];
const GROUP_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::In, Op::NotIn, Op::Matches, Op::NotMatches, Op::Exists, Op::NotExists];
const ALL_OPS: &[Op] = &[
    Op::Eq,
    Op::Ne,
    Op::Gt,
    Op::Ge,
    Op::Lt,
    Op::Le,
    Op::Exists,
    Op::NotExists,
    Op::In,
    Op::NotIn,
    Op::Matches,
    Op::NotMatches,
];

/// The operators the ECS documentation lists for each subject (attributes take them all;
/// `task:group` takes the string and existence operators).
fn valid_ops(subject: &Subject) -> &'static [Op] {
    match subject {
        Subject::Attribute(_) => ALL_OPS,
        Subject::TaskGroup => GROUP_OPS,
        Subject::Ec2InstanceId | Subject::AgentConnected => MATCHING_OPS,
        Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => ORDERING_OPS,
    }
}

/// Characters that end a subject or a bare value.
fn is_delimiter(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b'(' | b')' | b'[' | b']' | b',')
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, at: usize, message: String) -> ParseError {
        ParseError { column: self.src[..at].chars().count() + 1, message }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        let n = self.rest().len() - self.rest().trim_start().len();
        self.pos += n;
    }

    /// The token at the cursor, quoted, for error messages.
    fn describe_here(&self) -> String {
        if self.at_end() {
            return "end of expression".to_string();
        }
        let rest = self.rest();
        let first = rest.chars().next().map(char::len_utf8).unwrap_or(1);
        let end = rest.bytes().position(|c| c.is_ascii_whitespace() || matches!(c, b'(' | b')')).unwrap_or(rest.len());
        format!("'{}'", &rest[..end.max(first)])
    }

    fn eat(&mut self, sym: &str) -> bool {
        if self.rest().starts_with(sym) {
            self.pos += sym.len();
            true
        } else {
            false
        }
    }

    /// A keyword, case-insensitively, that is a whole word: followed by the end, a space, or a
    /// character that starts the next operand.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        let rest = self.rest().as_bytes();
        let boundary = |c: Option<&u8>| c.is_none_or(|c| c.is_ascii_whitespace() || matches!(c, b'(' | b'!'));
        if rest.len() >= kw.len()
            && rest[..kw.len()].eq_ignore_ascii_case(kw.as_bytes())
            && boundary(rest.get(kw.len()))
        {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    fn or_expr(&mut self, depth: usize) -> Result<Node, ParseError> {
        let mut items = vec![self.and_expr(depth)?];
        loop {
            self.skip_ws();
            if self.eat("||") || self.eat_keyword("or") {
                items.push(self.and_expr(depth)?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Node::Or(items) })
    }

    fn and_expr(&mut self, depth: usize) -> Result<Node, ParseError> {
        let mut items = vec![self.unary(depth)?];
        loop {
            self.skip_ws();
            if self.eat("&&") || self.eat_keyword("and") {
                items.push(self.unary(depth)?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Node::And(items) })
    }

    fn unary(&mut self, depth: usize) -> Result<Node, ParseError> {
        self.skip_ws();
        if depth > MAX_DEPTH {
            return Err(self.error(self.pos, format!("expression nests deeper than {MAX_DEPTH} levels")));
        }
        let start = self.pos;
        if self.eat("!") || self.eat_keyword("not") {
            self.skip_ws();
            if self.at_end() {
                return Err(self.error(start, "'not' must be followed by a condition".to_string()));
            }
            return Ok(Node::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.eat("(") {
            let inner = self.or_expr(depth + 1)?;
            self.skip_ws();
            if !self.eat(")") {
                let msg =
                    format!("expected ')' to close the '(' at column {}, found {}", start + 1, self.describe_here());
                return Err(self.error(self.pos, msg));
            }
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, ParseError> {
        let start = self.pos;
        let word_len =
            self.rest().bytes().position(|c| is_delimiter(c) || matches!(c, b'=' | b'!' | b'<' | b'>' | b'~'));
        let word = &self.rest()[..word_len.unwrap_or(self.rest().len())];
        if word.is_empty() || word.eq_ignore_ascii_case("and") || word.eq_ignore_ascii_case("or") {
            let msg = format!("expected a condition such as 'attribute:NAME == VALUE', found {}", self.describe_here());
            return Err(self.error(start, msg));
        }
        let subject = self.subject(word, start)?;
        self.pos += word.len();
        self.skip_ws();
        let op_start = self.pos;
        let op = self.operator(&subject)?;
        if !valid_ops(&subject).contains(&op) {
            let valid: Vec<String> = valid_ops(&subject).iter().map(Op::to_string).collect();
            let msg = format!("operator '{op}' does not apply to {subject}; use one of {}", valid.join(", "));
            return Err(self.error(op_start, msg));
        }
        let leaf = self.argument(subject, op)?;
        Ok(Node::Leaf(leaf))
    }

    fn subject(&self, word: &str, at: usize) -> Result<Subject, ParseError> {
        const PREFIX: &str = "attribute:";
        if word.len() >= PREFIX.len() && word[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
            let name = &word[PREFIX.len()..];
            if name.is_empty() {
                return Err(self.error(at + PREFIX.len(), "attribute name missing after 'attribute:'".to_string()));
            }
            return Ok(Subject::Attribute(name.into()));
        }
        Ok(match word.to_ascii_lowercase().as_str() {
            "task:group" => Subject::TaskGroup,
            "ec2instanceid" => Subject::Ec2InstanceId,
            "agentconnected" => Subject::AgentConnected,
            "agentversion" => Subject::AgentVersion,
            "registeredat" => Subject::RegisteredAt,
            "runningtaskscount" => Subject::RunningTasksCount,
            _ => {
                let msg = format!(
                    "unknown subject '{word}': expected attribute:NAME, task:group, ec2InstanceId, agentConnected, \
                     agentVersion, registeredAt or runningTasksCount"
                );
                return Err(self.error(at, msg));
            }
        })
    }

    fn operator(&mut self, subject: &Subject) -> Result<Op, ParseError> {
        // Longest symbols first, so `>=` is not read as `>` followed by `=`.
        const SYMBOLS: &[(&str, Op)] = &[
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("=~", Op::Matches),
            ("!~", Op::NotMatches),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        let start = self.pos;
        if self.rest().starts_with('!') {
            // `!exists` and `!in` are words behind a bang.
            self.pos += 1;
            if self.eat_keyword("exists") {
                return Ok(Op::NotExists);
            }
            if self.eat_keyword("in") {
                return Ok(Op::NotIn);
            }
            self.pos = start;
        }
        for (sym, op) in SYMBOLS {
            if self.eat(sym) {
                return Ok(*op);
            }
        }
        let word_len = self.rest().bytes().position(|c| !(c.is_ascii_alphanumeric() || c == b'_'));
        let word = &self.rest()[..word_len.unwrap_or(self.rest().len())];
        let op = match word.to_ascii_lowercase().as_str() {
            "equals" => Some(Op::Eq),
            "not_equals" => Some(Op::Ne),
            "greater_than" => Some(Op::Gt),
            "greater_than_equal" => Some(Op::Ge),
            "less_than" => Some(Op::Lt),
            "less_than_equal" => Some(Op::Le),
            "exists" => Some(Op::Exists),
            "not_exists" => Some(Op::NotExists),
            "in" => Some(Op::In),
            "not_in" => Some(Op::NotIn),
            "matches" => Some(Op::Matches),
            "not_matches" => Some(Op::NotMatches),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += word.len();
            return Ok(op);
        }
        let msg = if self.rest().starts_with('=') {
            "unknown operator '=': did you mean '=='?".to_string()
        } else {
            format!(
                "expected an operator after '{subject}' (==, !=, >, >=, <, <=, exists, !exists, in, not_in, =~, !~), \
                 found {}",
                self.describe_here()
            )
        };
        Err(self.error(start, msg))
    }

    /// One value: quoted (anything up to the matching quote) or bare.
    fn value(&mut self, after: &str) -> Result<(&'a str, usize), ParseError> {
        self.skip_ws();
        let start = self.pos;
        if let Some(q @ (b'\'' | b'"')) = self.peek() {
            let body = &self.rest()[1..];
            let Some(len) = body.bytes().position(|c| c == q) else {
                return Err(self.error(start, format!("quoted value starting here is never closed with {}", q as char)));
            };
            let text = &body[..len];
            self.pos += len + 2;
            return Ok((text, start));
        }
        let rest = self.rest().as_bytes();
        let mut end = 0;
        while end < rest.len()
            && !is_delimiter(rest[end])
            && !rest[end..].starts_with(b"&&")
            && !rest[end..].starts_with(b"||")
        {
            end += 1;
        }
        if end == 0 {
            return Err(self.error(start, format!("expected a value after '{after}', found {}", self.describe_here())));
        }
        let text = &self.rest()[..end];
        self.pos += end;
        Ok((text, start))
    }

    /// The argument of `=~` / `!~`: like a value, except that a bare pattern keeps its balanced
    /// groups and classes, so `(g2|t2)\..*` and `a{1,3}` need no quotes; an unbalanced `)` still
    /// closes the enclosing parenthesis of the expression.
    fn pattern(&mut self, after: &str) -> Result<(&'a str, usize), ParseError> {
        self.skip_ws();
        if matches!(self.peek(), Some(b'\'' | b'"')) {
            return self.value(after);
        }
        let start = self.pos;
        let rest = self.rest().as_bytes();
        let (mut end, mut depth) = (0, 0usize);
        while end < rest.len() {
            match rest[end] {
                b'\\' => end += 1,
                b'(' | b'[' => depth += 1,
                b')' | b']' if depth == 0 => break,
                b')' | b']' => depth -= 1,
                c if depth == 0 && c.is_ascii_whitespace() => break,
                _ if depth == 0 && (rest[end..].starts_with(b"&&") || rest[end..].starts_with(b"||")) => break,
                _ => {}
            }
            end += 1;
        }
        let end = end.min(rest.len());
        if end == 0 {
            return Err(
                self.error(start, format!("expected a pattern after '{after}', found {}", self.describe_here()))
            );
        }
        let text = &self.rest()[..end];
        self.pos += end;
        Ok((text, start))
    }

    fn list(&mut self, op: Op) -> Result<Vec<(&'a str, usize)>, ParseError> {
        self.skip_ws();
        if !self.eat("[") {
            let msg = format!("expected '[' to start the list of values after '{op}', found {}", self.describe_here());
            return Err(self.error(self.pos, msg));
        }
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if items.is_empty() && self.eat("]") {
                return Err(self.error(self.pos - 1, format!("the list after '{op}' is empty")));
            }
            items.push(self.value(if items.is_empty() { "[" } else { "," })?);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("]") {
                return Ok(items);
            }
            let msg = format!("expected ',' or ']' in the list after '{op}', found {}", self.describe_here());
            return Err(self.error(self.pos, msg));
        }
    }

    /// Reads the argument the operator takes and types it for the subject, so that evaluation
    /// never parses a number, a date or a pattern again.
    fn argument(&mut self, subject: Subject, op: Op) -> Result<Leaf, ParseError> {
        let negate = matches!(op, Op::Ne | Op::NotExists | Op::NotIn | Op::NotMatches);
        let pred = match op {
            Op::Exists | Op::NotExists => Pred::Exists,
            Op::Matches | Op::NotMatches => {
                let (text, at) = self.pattern(&op.to_string())?;
                let re = compile_pattern(text)
                    .map_err(|e| self.error(at, format!("invalid pattern '{text}' after '{op}': {e}")))?;
                Pred::Pattern(re)
            }
            Op::In | Op::NotIn => {
                let items = self.list(op)?;
                let mut values = Vec::with_capacity(items.len());
                for (text, at) in items {
                    values.push(self.typed_text(&subject, text, at)?);
                }
                Pred::OneOf(values)
            }
            Op::Eq | Op::Ne | Op::Gt | Op::Ge | Op::Lt | Op::Le => {
                let (text, at) = self.value(&op.to_string())?;
                let cmp = match op {
                    Op::Gt => CmpOp::Gt,
                    Op::Ge => CmpOp::Ge,
                    Op::Lt => CmpOp::Lt,
                    Op::Le => CmpOp::Le,
                    _ => CmpOp::Eq,
                };
                match &subject {
                    Subject::RegisteredAt => {
                        let (start, end) = parse_time(text).ok_or_else(|| {
                            self.error(
                                at,
                                format!(
                                    "registeredAt takes a date such as 2018-06-18 or 2018-06-18T22:28:28Z, found \
                                     '{text}'"
                                ),
                            )
                        })?;
                        Pred::Time { op: cmp, start, end }
                    }
                    Subject::RunningTasksCount => {
                        let n = text.parse::<u64>().map_err(|_| {
                            self.error(at, format!("runningTasksCount takes a whole number, found '{text}'"))
                        })?;
                        Pred::Count { op: cmp, n }
                    }
                    _ if cmp == CmpOp::Eq => Pred::OneOf(vec![self.typed_text(&subject, text, at)?]),
                    _ => {
                        Pred::Order { op: cmp, lit: Literal::new(text), version_only: subject == Subject::AgentVersion }
                    }
                }
            }
        };
        Ok(Leaf { subject, pred, negate })
    }

    /// A value compared for equality; agentConnected's must be a boolean, spelled as the instance
    /// reports it.
    fn typed_text(&self, subject: &Subject, text: &str, at: usize) -> Result<Box<str>, ParseError> {
        if *subject == Subject::AgentConnected {
            return match text.to_ascii_lowercase().as_str() {
                v @ ("true" | "false") => Ok(v.into()),
                _ => Err(self.error(at, format!("agentConnected is true or false, found '{text}'"))),
            };
        }
        Ok(text.into())
    }
}
