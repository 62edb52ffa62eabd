//! FilterLogEvents' `filterPattern` for unstructured text: terms (`ERROR`), quoted phrases
//! (`"connection refused"`), exclusions (`-DEBUG`) and alternatives (`?ERROR ?WARN`). Every
//! plain term must appear, no excluded one may, and when alternatives are given at least one of
//! them must appear. Matching is case-sensitive, as CloudWatch Logs' is. JSON (`{ $.x = 1 }`) and
//! space-delimited (`[ip, user, ...]`) patterns are refused.

use crate::error::{LogsError, Result};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pattern {
    required: Vec<String>,
    excluded: Vec<String>,
    any_of: Vec<String>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern> {
        let trimmed = text.trim();
        if trimmed.starts_with('{') || trimmed.starts_with('[') || trimmed.starts_with('%') {
            return Err(LogsError::invalid(
                "filterPattern: JSON, space-delimited and regular-expression patterns are not supported by Flotilla; \
                 use terms, \"quoted phrases\", -exclusions and ?alternatives.",
            ));
        }
        let mut pattern = Pattern::default();
        let mut chars = trimmed.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&first) = chars.peek() else { break };
            let kind = match first {
                '?' | '-' => {
                    chars.next();
                    first
                }
                _ => ' ',
            };
            let term = if chars.peek() == Some(&'"') {
                chars.next();
                let mut phrase = String::new();
                loop {
                    match chars.next() {
                        None => return Err(LogsError::invalid("filterPattern: a quoted phrase is not closed.")),
                        Some('"') => break,
                        Some('\\') => phrase.extend(chars.next()),
                        Some(c) => phrase.push(c),
                    }
                }
                phrase
            } else {
                let mut word = String::new();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    word.push(c);
                }
                word
            };
            if term.is_empty() {
                continue;
            }
            match kind {
                '?' => pattern.any_of.push(term),
                '-' => pattern.excluded.push(term),
                _ => pattern.required.push(term),
            }
        }
        Ok(pattern)
    }

    pub fn matches(&self, message: &str) -> bool {
        self.required.iter().all(|t| message.contains(t.as_str()))
            && !self.excluded.iter().any(|t| message.contains(t.as_str()))
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| message.contains(t.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, msg: &str) -> bool {
        Pattern::parse(p).unwrap().matches(msg)
    }

    #[test]
    fn terms_phrases_exclusions_and_alternatives() {
        assert!(m("", "anything"));
        assert!(m("ERROR db", "ERROR: db down"));
        assert!(!m("ERROR db", "ERROR: cache down"));
        assert!(!m("error", "ERROR"), "case-sensitive");
        assert!(m("\"db down\"", "ERROR: db down"));
        assert!(!m("\"db down\"", "db is down"));
        assert!(m("?ERROR ?WARN", "WARN slow"));
        assert!(!m("?ERROR ?WARN", "INFO ok"));
        assert!(m("ERROR -retrying", "ERROR fatal"));
        assert!(!m("ERROR -retrying", "ERROR retrying"));
        assert!(m("?\"a b\" ?c", "xa bx"));
    }

    #[test]
    fn unsupported_and_broken_patterns_are_refused() {
        assert!(Pattern::parse("{ $.level = \"error\" }").is_err());
        assert!(Pattern::parse("[ip, user]").is_err());
        let e = Pattern::parse("\"open").unwrap_err();
        assert!(e.message.contains("filterPattern"));
    }
}
