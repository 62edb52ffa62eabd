//! The console's HTTP routes: the shell, its static files, and the signed views (crate docs).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use flotilla_api::auth::Authenticator;
use flotilla_api::identity::Principal;
use flotilla_api::protocol::error_response;
use flotilla_api::{ApiError, Ctx};
use percent_encoding::percent_decode_str;

use crate::views::{self, ViewRequest};

/// Where the console is served.
pub const CONSOLE_PATH: &str = "/console";
/// Where its views are served (signed).
pub const VIEW_PATH: &str = "/console/view";

const SHELL: &str = include_str!("../assets/shell.html");
const SCRIPT: &str = include_str!("../assets/console.js");
const SIGV4: &str = include_str!("../assets/sigv4.js");
const STYLE: &str = include_str!("../assets/console.css");

/// Only this server's own script, styles and API: no inline script, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

struct ConsoleState {
    ctx: Ctx,
    auth: Option<Arc<Authenticator>>,
    shell: String,
}

/// The console's routes over `ctx`; `auth` checks the views' signatures (`None`: the server runs
/// with authentication disabled, and so does the console).
pub fn router(ctx: Ctx, auth: Option<Arc<Authenticator>>) -> Router {
    let page = SHELL.replace("{{region}}", &crate::html::esc(&ctx.arns.region));
    let state = Arc::new(ConsoleState { ctx, auth, shell: page });
    Router::new()
        .route(CONSOLE_PATH, get(shell))
        .route("/console/", get(shell))
        .route("/console/{*page}", get(shell))
        .route("/console/static/{file}", get(static_file))
        .route(VIEW_PATH, get(view))
        .route("/console/view/", get(view))
        .route("/console/view/{*page}", get(view))
        .with_state(state)
}

async fn shell(State(state): State<Arc<ConsoleState>>) -> Response<Body> {
    page(StatusCode::OK, "text/html; charset=utf-8", state.shell.clone())
}

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response<Body> {
    let (content_type, text) = match file.as_str() {
        "console.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "sigv4.js" => ("text/javascript; charset=utf-8", SIGV4),
        "console.css" => ("text/css; charset=utf-8", STYLE),
        _ => return page(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "Not found.".into()),
    };
    page(StatusCode::OK, content_type, text.to_string())
}

fn page(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(content_type));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

/// One page's fragment, for the root key pair only, with an ETag the next refresh can send back.
async fn view(State(state): State<Arc<ConsoleState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response<Body> {
    let request_id = uuid::Uuid::new_v4().to_string();
    match render(&state, &method, &uri, &headers).await {
        Ok(body) => {
            let etag = etag_of(&body);
            if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                let mut r = page(StatusCode::NOT_MODIFIED, "text/html; charset=utf-8", String::new());
                r.headers_mut().insert("etag", HeaderValue::from_str(&etag).expect("hex"));
                return r;
            }
            let mut r = page(StatusCode::OK, "text/html; charset=utf-8", body);
            r.headers_mut().insert("etag", HeaderValue::from_str(&etag).expect("hex"));
            r
        }
        Err(e) => error_response(&request_id, &e),
    }
}

async fn render(state: &ConsoleState, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<String, ApiError> {
    let principal = match &state.auth {
        Some(auth) => auth.authenticate(&state.ctx, method, uri, headers, b"").await?,
        None => Principal::Root,
    };
    principal.require_root("ecs:DescribeClusters")?;
    let rest = uri.path().strip_prefix(VIEW_PATH).unwrap_or("");
    let segments = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8().map(|c| c.into_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::client("The console path is not UTF-8."))?;
    let query = parse_query(uri.query());
    let req = ViewRequest { ctx: &state.ctx, segments, query };
    Ok(views::render(&req).await?.body)
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (decode(k), decode(v))
        })
        .collect()
}

/// A weak validator of the fragment's bytes: a refresh with the same one gets a 304.
fn etag_of(body: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:016x}-{:x}\"", h.finish(), body.len())
}
