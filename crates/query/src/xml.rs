//! A small XML writer for query-protocol answers: elements, escaped text, and the envelopes of
//! both dialects. Answers are built in order, so a writer over a `String` is all it takes.

use std::borrow::Cow;

use crate::error::Dialect;

/// Escapes `<`, `>`, `&` and `"` (apostrophes stay readable: values are never in `'`-quoted
/// attributes); borrows when there is nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['<', '>', '&', '"']) && !text.contains(|c: char| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            // Control characters other than tab and newline are not allowed in XML 1.0 even as
            // references; a client's stray byte must not make the whole answer unreadable.
            c if c.is_control() && c != '\n' && c != '\t' && c != '\r' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// An XML document under construction.
#[derive(Debug, Default)]
pub struct Xml {
    buf: String,
}

impl Xml {
    pub fn new() -> Self {
        Xml { buf: String::with_capacity(512) }
    }

    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// An opening tag with its namespace.
    pub fn open_ns(&mut self, tag: &str, xmlns: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push_str(" xmlns=\"");
        self.buf.push_str(&escape(xmlns));
        self.buf.push_str("\">");
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `<tag>text</tag>`, the text escaped.
    pub fn leaf(&mut self, tag: &str, text: impl AsRef<str>) -> &mut Self {
        self.open(tag);
        self.buf.push_str(&escape(text.as_ref()));
        self.close(tag)
    }

    /// A leaf for a value that may be absent: nothing at all when it is.
    pub fn opt_leaf<T: AsRef<str>>(&mut self, tag: &str, text: Option<T>) -> &mut Self {
        if let Some(t) = text {
            self.leaf(tag, t);
        }
        self
    }

    /// `<tag>...</tag>` with `body` writing what goes inside.
    pub fn elem(&mut self, tag: &str, body: impl FnOnce(&mut Xml)) -> &mut Self {
        self.open(tag);
        body(self);
        self.close(tag)
    }

    /// `<tag><item>..</item>...</tag>`: a list, each entry wrapped in `item` (`member` or `item`).
    pub fn list<T>(
        &mut self,
        tag: &str,
        item: &str,
        entries: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.open(tag);
        for e in entries {
            self.open(item);
            each(self, e);
            self.close(item);
        }
        self.close(tag)
    }

    /// A list of plain strings.
    pub fn string_list<S: AsRef<str>>(
        &mut self,
        tag: &str,
        item: &str,
        entries: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        self.list(tag, item, entries, |x, s| {
            x.buf.push_str(&escape(s.as_ref()));
        })
    }

    /// Appends a fragment written by another writer.
    pub fn append(&mut self, fragment: Xml) -> &mut Self {
        self.buf.push_str(&fragment.buf);
        self
    }

    pub fn finish(self) -> String {
        self.buf
    }
}

/// A successful answer to `action`: the dialect's envelope around what `body` writes.
///
/// Query: `<{A}Response xmlns><{A}Result>body</{A}Result><ResponseMetadata><RequestId/>..`;
/// EC2: `<{A}Response xmlns><requestId/>body</{A}Response>`.
pub fn envelope(dialect: Dialect, action: &str, request_id: &str, body: impl FnOnce(&mut Xml)) -> String {
    let mut x = Xml::new();
    let response = format!("{action}Response");
    match dialect {
        Dialect::Query { xmlns } => {
            x.open_ns(&response, xmlns);
            let result = format!("{action}Result");
            x.elem(&result, body);
            x.elem("ResponseMetadata", |x| {
                x.leaf("RequestId", request_id);
            });
        }
        Dialect::Ec2 => {
            x.open_ns(&response, crate::error::EC2_XMLNS);
            x.leaf("requestId", request_id);
            body(&mut x);
        }
    }
    x.close(&response);
    x.finish()
}

/// An XML HTTP answer with AWS's request id header.
pub fn http_response(status: http::StatusCode, request_id: &str, body: String) -> http::Response<String> {
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/xml"));
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// [`envelope`] as an HTTP 200 answer.
pub fn ok_response(
    dialect: Dialect,
    action: &str,
    request_id: &str,
    body: impl FnOnce(&mut Xml),
) -> http::Response<String> {
    http_response(http::StatusCode::OK, request_id, envelope(dialect, action, request_id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_metacharacters_and_borrows_otherwise() {
        assert!(matches!(escape("plain text"), Cow::Borrowed(_)));
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c'");
        assert_eq!(escape("x\u{1}y"), "x\u{FFFD}y");
    }

    #[test]
    fn query_envelope_wraps_a_result_and_metadata() {
        let d = Dialect::Query { xmlns: "urn:x" };
        let s = envelope(d, "DescribeThings", "rid", |x| {
            x.string_list("Names", d.list_item(), ["a", "<b>"]);
        });
        assert_eq!(
            s,
            "<DescribeThingsResponse xmlns=\"urn:x\"><DescribeThingsResult><Names><member>a</member>\
             <member>&lt;b&gt;</member></Names></DescribeThingsResult><ResponseMetadata><RequestId>rid</RequestId>\
             </ResponseMetadata></DescribeThingsResponse>"
        );
    }

    #[test]
    fn ec2_envelope_has_the_request_id_first() {
        let s = envelope(Dialect::Ec2, "DescribeVpcs", "rid", |x| {
            x.list("vpcSet", "item", [1, 2], |x, n| {
                x.leaf("n", n.to_string());
            });
            x.opt_leaf("nextToken", None::<&str>);
        });
        assert_eq!(
            s,
            "<DescribeVpcsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>rid</requestId>\
             <vpcSet><item><n>1</n></item><item><n>2</n></item></vpcSet></DescribeVpcsResponse>"
        );
    }
}
