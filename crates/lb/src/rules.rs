//! Listener rules compiled for matching: ALB's conditions (values in one condition are OR,
//! conditions of a rule AND) and its terminal actions (forward to weighted groups, fixed
//! response, redirect with `#{...}` placeholders).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use flotilla_endpoints::elb::Condition;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use percent_encoding::percent_decode_str;

use crate::matching::{host_without_port, Cidr, Glob};
use crate::table::Group;

/// What a rule looks at in a request.
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub source: IpAddr,
}

impl RequestView<'_> {
    /// The `Host` header without its port.
    pub fn host(&self) -> Option<&str> {
        self.headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).map(host_without_port)
    }
}

#[derive(Debug)]
pub enum Matcher {
    Path(Vec<Glob>),
    Host(Vec<Glob>),
    Header(HeaderName, Vec<Glob>),
    Method(Vec<String>),
    Query(Vec<(Option<Glob>, Glob)>),
    Source(Vec<Cidr>),
}

impl Matcher {
    /// Compiles a condition; `None` (with the reason) for one that cannot match anything
    /// sensible, which the control plane should have refused.
    pub fn compile(c: &Condition) -> Result<Matcher, String> {
        Ok(match c {
            Condition::PathPattern { values } => Matcher::Path(values.iter().map(|v| Glob::new(v, true)).collect()),
            Condition::HostHeader { values } => Matcher::Host(values.iter().map(|v| Glob::new(v, false)).collect()),
            Condition::HttpHeader { name, values } => Matcher::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("http-header name '{name}' is not a header name"))?,
                values.iter().map(|v| Glob::new(v, false)).collect(),
            ),
            Condition::HttpRequestMethod { values } => Matcher::Method(values.clone()),
            Condition::QueryString { values } => Matcher::Query(
                values.iter().map(|(k, v)| (k.as_deref().map(|k| Glob::new(k, false)), Glob::new(v, false))).collect(),
            ),
            Condition::SourceIp { values } => Matcher::Source(
                values
                    .iter()
                    .map(|v| Cidr::parse(v).ok_or_else(|| format!("source-ip value '{v}' is not a CIDR block")))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Matcher::Path(globs) => globs.iter().any(|g| g.matches(req.path)),
            Matcher::Host(globs) => req.host().is_some_and(|h| globs.iter().any(|g| g.matches(h))),
            Matcher::Header(name, globs) => req
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| globs.iter().any(|g| g.matches(v))),
            Matcher::Method(methods) => methods.iter().any(|m| m == req.method),
            Matcher::Query(pairs) => {
                let query = req.query.unwrap_or("");
                pairs.iter().any(|(key, value)| {
                    query.split('&').filter(|p| !p.is_empty()).any(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        let (k, v) = (decode(k), decode(v));
                        key.as_ref().is_none_or(|g| g.matches(&k)) && value.matches(&v)
                    })
                })
            }
            Matcher::Source(blocks) => blocks.iter().any(|c| c.contains(req.source)),
        }
    }
}

fn decode(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('%') || s.contains('+') {
        let plus = s.replace('+', " ");
        std::borrow::Cow::Owned(percent_decode_str(&plus).decode_utf8_lossy().into_owned())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A terminal action ready to run.
#[derive(Debug)]
pub enum RouteAction {
    Forward { groups: Vec<(Arc<Group>, u32)>, total_weight: u32 },
    Fixed { status: StatusCode, content_type: Option<HeaderValue>, body: Bytes },
    Redirect(Redirect),
}

impl RouteAction {
    /// The group for one request, by weight (a group of weight 0 gets nothing unless all are 0).
    pub fn pick_group(groups: &[(Arc<Group>, u32)], total_weight: u32) -> Option<&Arc<Group>> {
        if total_weight == 0 || groups.len() == 1 {
            return groups.first().map(|(g, _)| g);
        }
        let mut n = rand::random::<u32>() % total_weight;
        for (g, w) in groups {
            if n < *w {
                return Some(g);
            }
            n -= w;
        }
        groups.last().map(|(g, _)| g)
    }
}

/// A redirect's components, each possibly holding placeholders.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub protocol: String,
    pub host: String,
    pub port: String,
    pub path: String,
    pub query: String,
    pub status: StatusCode,
}

/// The request facts the placeholders stand for.
pub struct RedirectInput<'a> {
    /// `HTTP` or `HTTPS`.
    pub protocol: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl Redirect {
    pub fn new(
        protocol: Option<&str>,
        host: Option<&str>,
        port: Option<&str>,
        path: Option<&str>,
        query: Option<&str>,
        status: &str,
    ) -> Redirect {
        Redirect {
            protocol: protocol.unwrap_or("#{protocol}").to_string(),
            host: host.unwrap_or("#{host}").to_string(),
            port: port.unwrap_or("#{port}").to_string(),
            path: path.unwrap_or("/#{path}").to_string(),
            query: query.unwrap_or("#{query}").to_string(),
            status: if status == "HTTP_301" { StatusCode::MOVED_PERMANENTLY } else { StatusCode::FOUND },
        }
    }

    /// The `Location` of the redirect for one request.
    pub fn location(&self, input: &RedirectInput<'_>) -> String {
        let port = input.port.to_string();
        // `#{path}` is the request's path without its leading slash, so that `/#{path}` is it.
        let path_value = input.path.strip_prefix('/').unwrap_or(input.path);
        let fill = |s: &str| {
            s.replace("#{protocol}", input.protocol)
                .replace("#{host}", input.host)
                .replace("#{port}", &port)
                .replace("#{path}", path_value)
                .replace("#{query}", input.query.unwrap_or(""))
        };
        let protocol = fill(&self.protocol).to_ascii_lowercase();
        let host = fill(&self.host);
        let port = fill(&self.port);
        let mut path = fill(&self.path);
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let query = fill(&self.query);
        let default_port = matches!((protocol.as_str(), port.as_str()), ("http", "80") | ("https", "443"));
        let mut out = format!("{protocol}://{host}");
        if !default_port && !port.is_empty() {
            out.push(':');
            out.push_str(&port);
        }
        out.push_str(&path);
        if !query.is_empty() {
            out.push('?');
            out.push_str(&query);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(headers: &'a HeaderMap, method: &'a str, path: &'a str, query: Option<&'a str>) -> RequestView<'a> {
        RequestView { method, path, query, headers, source: "10.0.0.7".parse().unwrap() }
    }

    fn m(c: Condition) -> Matcher {
        Matcher::compile(&c).unwrap()
    }

    #[test]
    fn conditions_match_like_alb() {
        let mut h = HeaderMap::new();
        h.insert("host", "API.Example.com:8080".parse().unwrap());
        h.insert("x-env", "Blue-1".parse().unwrap());
        let r = view(&h, "GET", "/api/v1", Some("mode=fast&debug"));
        assert!(m(Condition::PathPattern { values: vec!["/img/*".into(), "/api/*".into()] }).matches(&r));
        assert!(!m(Condition::PathPattern { values: vec!["/API/*".into()] }).matches(&r));
        assert!(m(Condition::HostHeader { values: vec!["*.example.com".into()] }).matches(&r));
        assert!(!m(Condition::HostHeader { values: vec!["example.com".into()] }).matches(&r));
        assert!(m(Condition::HttpHeader { name: "X-Env".into(), values: vec!["blue*".into()] }).matches(&r));
        assert!(!m(Condition::HttpHeader { name: "X-Other".into(), values: vec!["*".into()] }).matches(&r));
        assert!(m(Condition::HttpRequestMethod { values: vec!["POST".into(), "GET".into()] }).matches(&r));
        assert!(!m(Condition::HttpRequestMethod { values: vec!["get".into()] }).matches(&r));
        assert!(m(Condition::QueryString { values: vec![(Some("mode".into()), "f*".into())] }).matches(&r));
        assert!(m(Condition::QueryString { values: vec![(None, "fast".into())] }).matches(&r), "no key: any key");
        assert!(!m(Condition::QueryString { values: vec![(Some("mode".into()), "slow".into())] }).matches(&r));
        assert!(m(Condition::SourceIp { values: vec!["10.0.0.0/24".into()] }).matches(&r));
        assert!(!m(Condition::SourceIp { values: vec!["192.168.0.0/16".into()] }).matches(&r));
        assert!(Matcher::compile(&Condition::SourceIp { values: vec!["bad".into()] }).unwrap_err().contains("bad"));
    }

    #[test]
    fn redirect_fills_placeholders() {
        let input = RedirectInput { protocol: "HTTP", host: "example.com", port: 80, path: "/a/b", query: Some("x=1") };
        let keep = Redirect::new(None, None, None, None, None, "HTTP_301");
        assert_eq!(keep.location(&input), "http://example.com/a/b?x=1");
        assert_eq!(keep.status, StatusCode::MOVED_PERMANENTLY);
        let https = Redirect::new(Some("HTTPS"), None, Some("443"), None, None, "HTTP_302");
        assert_eq!(https.location(&input), "https://example.com/a/b?x=1");
        assert_eq!(https.status, StatusCode::FOUND);
        let moved = Redirect::new(
            None,
            Some("new.#{host}"),
            Some("8443"),
            Some("/v2/#{path}"),
            Some("from=#{port}"),
            "HTTP_302",
        );
        assert_eq!(moved.location(&input), "http://new.example.com:8443/v2/a/b?from=80");
        let no_query = RedirectInput { query: None, ..input };
        assert_eq!(keep.location(&no_query), "http://example.com/a/b");
    }
}
