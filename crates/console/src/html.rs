//! Writing HTML safely: every text and attribute value from the store goes through [`esc`], and
//! the few pieces of markup views share (links, tables, action buttons and forms) are built here,
//! so the conventions the script relies on (see the crate docs) live in one place.

use std::fmt::Write;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// The ECS JSON protocol's target prefix, for action buttons and forms.
pub const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113";

/// Characters left as they are in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `s` with `& < > " '` escaped, for text and for quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A console URL from path segments, each percent-encoded: `href(&["clusters", "a b"])` is
/// `/console/clusters/a%20b`.
pub fn href(segments: &[&str]) -> String {
    let mut out = String::from(crate::CONSOLE_PATH);
    for s in segments {
        out.push('/');
        out.extend(utf8_percent_encode(s, SEGMENT));
    }
    out
}

/// `<a href="...">text</a>`, both escaped.
pub fn link(url: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(url), esc(text))
}

/// A button making one ECS call with `body` (see the crate docs).
pub fn action_button(operation: &str, body: &Value, label: &str, confirm: Option<&str>, done: &str) -> String {
    let mut out = format!(
        "<button type=\"button\" class=\"action\" data-target=\"{ECS_TARGET}.{}\" data-body=\"{}\" data-done=\"{}\"",
        esc(operation),
        esc(&body.to_string()),
        esc(done)
    );
    if let Some(q) = confirm {
        let _ = write!(out, " data-confirm=\"{}\"", esc(q));
    }
    let _ = write!(out, ">{}</button>", esc(label));
    out
}

/// The opening tag of a form making one ECS call with `body` and its named fields (see the crate
/// docs); `id` makes it survive refreshes while it is being filled. Close it with `</form>`.
pub fn action_form(operation: &str, body: &Value, id: &str, done: &str) -> String {
    format!(
        "<form class=\"action\" id=\"{}\" data-keep data-target=\"{ECS_TARGET}.{}\" data-body=\"{}\" data-done=\"{}\">",
        esc(id),
        esc(operation),
        esc(&body.to_string()),
        esc(done)
    )
}

/// A table with these column headings whose rows are already-escaped cells.
pub fn table<R, C>(class: &str, headings: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = String>,
{
    let mut out = format!("<table class=\"{}\"><thead><tr>", esc(class));
    for h in headings {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    let mut any = false;
    for row in rows {
        any = true;
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    if !any {
        let _ = write!(out, "<tr><td class=\"empty\" colspan=\"{}\">None.</td></tr>", headings.len());
    }
    out.push_str("</tbody></table>");
    out
}

/// A status word as a badge whose class the style sheet colours (`status-running`, ...).
pub fn badge(status: &str) -> String {
    format!("<span class=\"badge status-{}\">{}</span>", esc(&status.to_ascii_lowercase()), esc(status))
}

/// A time in milliseconds since the epoch, as RFC 3339 in UTC (empty when absent).
pub fn time_ms(ms: Option<i64>) -> String {
    ms.map(flotilla_model::timestamp::rfc3339_seconds).unwrap_or_default()
}

/// The breadcrumb trail above a page's title: `(text, url)` pairs, the last one the page itself.
pub fn crumbs(trail: &[(&str, &str)]) -> String {
    let mut out = String::from("<nav class=\"crumbs\">");
    for (i, (text, url)) in trail.iter().enumerate() {
        if i > 0 {
            out.push_str(" / ");
        }
        out.push_str(&link(url, text));
    }
    out.push_str("</nav>");
    out
}

/// A timestamp from the ECS shapes (epoch seconds), as [`time_ms`] writes it.
pub fn time(t: Option<flotilla_model::Timestamp>) -> String {
    time_ms(t.map(|t| t.as_millis()))
}

/// An optional text, escaped (empty when absent).
pub fn opt(s: Option<&str>) -> String {
    s.map(esc).unwrap_or_default()
}

/// The last segment of an ARN (a task's or instance's ID), or the string itself, for link texts.
pub fn short(arn: &str) -> &str {
    flotilla_model::arn::short_id(arn)
}

/// `yes` or `no`.
pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A row of summary cards: `(label, already-escaped value)`.
pub fn cards(items: &[(&str, String)]) -> String {
    let mut out = String::from("<div class=\"cards\">");
    for (label, value) in items {
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"card-value\">{value}</div><div class=\"card-label\">{}</div></div>",
            esc(label)
        );
    }
    out.push_str("</div>");
    out
}

/// A section heading and its content.
pub fn section(title: &str, content: &str) -> String {
    format!("<section><h2>{}</h2>{content}</section>", esc(title))
}

/// A JSON value, pretty-printed and escaped, in a `<pre class="json">`.
pub fn json_pre(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    format!("<pre class=\"json\">{}</pre>", esc(&text))
}

/// A definition list of `(term, already-escaped value)` pairs, skipping empty values.
pub fn facts(items: &[(&str, String)]) -> String {
    let mut out = String::from("<dl class=\"facts\">");
    for (term, value) in items.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = write!(out, "<dt>{}</dt><dd>{value}</dd>", esc(term));
    }
    out.push_str("</dl>");
    out
}

/// A console URL with a query string built from `(name, value)` pairs, each percent-encoded.
pub fn href_query(segments: &[&str], query: &[(&str, &str)]) -> String {
    let mut out = href(segments);
    for (i, (k, v)) in query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.extend(utf8_percent_encode(k, SEGMENT));
        out.push('=');
        out.extend(utf8_percent_encode(v, SEGMENT));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_text_and_attributes() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn hrefs_encode_each_segment() {
        assert_eq!(href(&["clusters", "a b/c"]), "/console/clusters/a%20b%2Fc");
        assert_eq!(href(&[]), "/console");
    }

    #[test]
    fn action_buttons_carry_an_escaped_json_body() {
        let b = action_button("StopTask", &serde_json::json!({"task": "t\"1"}), "Stop", Some("Stop it?"), "Stopping");
        assert!(b.contains("data-target=\"AmazonEC2ContainerServiceV20141113.StopTask\""), "{b}");
        assert!(b.contains("data-body=\"{&quot;task&quot;:&quot;t\\&quot;1&quot;}\""), "{b}");
        assert!(b.contains("data-confirm=\"Stop it?\""), "{b}");
    }

    #[test]
    fn query_urls_encode_names_and_values() {
        assert_eq!(
            href_query(&["clusters", "c", "tasks"], &[("service", "a&b"), ("page", "2")]),
            "/console/clusters/c/tasks?service=a%26b&page=2"
        );
    }

    #[test]
    fn json_and_facts_are_escaped() {
        assert!(json_pre(&serde_json::json!({"a": "<b>"})).contains("&lt;b&gt;"));
        let f = facts(&[("A<", "x".into()), ("B", String::new())]);
        assert_eq!(f, "<dl class=\"facts\"><dt>A&lt;</dt><dd>x</dd></dl>");
    }

    #[test]
    fn empty_tables_say_so() {
        let t = table("x", &["A", "B"], Vec::<Vec<String>>::new());
        assert!(t.contains("colspan=\"2\">None.</td>"), "{t}");
    }
}
