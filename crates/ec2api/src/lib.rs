//! flowgate's EC2 Query API: the HTTP endpoint boto3, the AWS CLI and
//! boto 2 talk to. It decodes EC2's dotted parameters, authenticates
//! Signature Version 4 and 2 requests against the stored secrets, runs the
//! action on the store (reads from memory, writes through group commit) and
//! answers in EC2's XML, errors included.

pub mod actions;
pub mod auth;
pub mod compute;
pub mod counters;
pub mod filter;
pub mod http;
pub mod https;
pub mod limits;
pub mod metrics;
pub mod params;
pub mod xml;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use model::Ec2Error;
use store::Store;

use crate::actions::{Ctx, OsEntropy};
use crate::auth::SignedRequest;
use crate::limits::{Limiter, Limits};
use crate::metrics::{ApiMetrics, Refusal};
use crate::params::Params;

/// The API version used when a request names none.
pub const DEFAULT_VERSION: &str = "2016-11-15";

/// How the API behaves.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The region name clients put in their signatures and DescribeRegions shows.
    pub region: String,
    /// The availability zone instances get unless they ask for another.
    pub zone: String,
    /// The endpoint DescribeRegions shows.
    pub endpoint: String,
    /// AddressLimitExceeded beyond this many Elastic IPs per account.
    pub addresses_per_account: usize,
    /// How far a request's signing time may be from ours.
    pub clock_skew: Duration,
    /// How long terminated instances stay visible.
    pub terminated_retention: Duration,
    /// Request rate limits per account and the bound on requests in
    /// progress (none by default).
    pub limits: Limits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8773)),
            region: "flowgate-1".into(),
            zone: "flowgate-1a".into(),
            endpoint: "127.0.0.1:8773".into(),
            addresses_per_account: 5,
            clock_skew: Duration::from_secs(300),
            terminated_retention: Duration::from_secs(3600),
            limits: Limits::UNLIMITED,
        }
    }
}

/// The API server's shared state.
pub struct Api {
    /// The store.
    pub store: Store,
    /// The configuration.
    pub config: ApiConfig,
    request_prefix: u64,
    request_counter: AtomicU64,
    /// Where GetConsoleOutput asks for an instance's console.
    console: Option<std::sync::Arc<dyn compute::ComputeDriver>>,
    /// Where DescribeSecurityGroupRules reads per-rule packet counts.
    counters: Option<std::sync::Arc<dyn counters::RuleCounters>>,
    /// Request rate limits and the bound on requests in progress.
    limiter: Limiter,
    /// What `/metrics` shows of the API.
    metrics: ApiMetrics,
}

impl Api {
    /// An API over `store`.
    pub fn new(store: Store, config: ApiConfig) -> Api {
        use model::Entropy as _;
        Api {
            store,
            limiter: Limiter::new(&config.limits),
            config,
            request_prefix: OsEntropy.next_u64(),
            request_counter: AtomicU64::new(0),
            console: None,
            counters: None,
            metrics: ApiMetrics::default(),
        }
    }

    /// The API's metrics.
    pub fn metrics(&self) -> &ApiMetrics {
        &self.metrics
    }

    /// The same API answering GetConsoleOutput from `driver`.
    pub fn with_console(mut self, driver: std::sync::Arc<dyn compute::ComputeDriver>) -> Api {
        self.console = Some(driver);
        self
    }

    /// The same API adding per-rule packet counts from `counters` to
    /// DescribeSecurityGroupRules (flowgate's extension).
    pub fn with_rule_counters(mut self, counters: std::sync::Arc<dyn counters::RuleCounters>) -> Api {
        self.counters = Some(counters);
        self
    }

    /// Where per-rule packet counts come from, if anywhere.
    pub fn rule_counters(&self) -> Option<&std::sync::Arc<dyn counters::RuleCounters>> {
        self.counters.as_ref()
    }

    /// The driver that knows instances' consoles, if any.
    pub fn console(&self) -> Option<&std::sync::Arc<dyn compute::ComputeDriver>> {
        self.console.as_ref()
    }

    /// Every availability zone: the configured one and those of the hypervisors.
    pub fn zones(&self) -> Vec<String> {
        let mut zones = vec![self.config.zone.clone()];
        for hv in self.store.read().hypervisors() {
            if !zones.contains(&hv.zone) {
                zones.push(hv.zone.clone());
            }
        }
        zones
    }

    fn next_request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let p = self.request_prefix;
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            (p >> 32) as u32,
            (p >> 16) as u16,
            (p & 0xfff) as u16,
            (n >> 48) as u16 & 0xfff,
            n & 0xffff_ffff_ffff
        )
    }
}

/// The HTTP routes: EC2 answers on `/` (and, leniently, any path).
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(axum::middleware::from_fn_with_state(api.clone(), bounded))
        .with_state(api)
}

/// The largest request body read: axum's default limit for a `Bytes` body.
const MAX_BODY: usize = 2 * 1024 * 1024;

/// Turns a request away with `Unavailable` before its body is read when
/// as many requests as allowed are in progress ([`Limits::max_in_flight`]),
/// and one whose body does not arrive within [`Limits::body_timeout`]:
/// clients that send headers and then nothing would otherwise hold every
/// place, unauthenticated, and lock everyone out.
///
/// Every request is counted here, once answered, in the API's metrics.
async fn bounded(
    AxumState(api): AxumState<Arc<Api>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let arrived = std::time::Instant::now();
    let response = admit_and_run(&api, request, next).await;
    let (action, code) = match response.extensions().get::<Answered>() {
        Some(answered) => (answered.action, answered.code),
        // Every answer of this crate says what it was; one made by axum
        // itself would not.
        None => (metrics::UNKNOWN_ACTION, metrics::UNKNOWN_ACTION),
    };
    api.metrics.answered(action, code, arrived.elapsed());
    response
}

/// What a request was answered, for the metrics: the action's label and
/// the EC2 error code (or "ok"), carried from the handler to [`bounded`]
/// in the response's extensions.
#[derive(Debug, Clone, Copy)]
struct Answered {
    action: &'static str,
    code: &'static str,
}

impl Answered {
    fn new(action: &str, code: &'static str) -> Answered {
        Answered {
            action: actions::known_name(action).unwrap_or(metrics::UNKNOWN_ACTION),
            code,
        }
    }
}

/// The work of [`bounded`]: the bound on requests in progress, the body's
/// deadline, then the request itself.
async fn admit_and_run(api: &Api, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let Ok(_permit) = api.limiter.enter() else {
        api.metrics.refused(Refusal::InProgress);
        let error = Ec2Error::Unavailable("too many requests in progress; retry later".into());
        return error_response(&error, &api.next_request_id(), "");
    };
    let _in_progress = api.metrics.in_progress();
    let (parts, body) = request.into_parts();
    let timeout = api.config.limits.body_timeout;
    let body = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(body)) => body,
        // Too long, or the connection broke (then no one reads the answer).
        Ok(Err(error)) => {
            let error =
                Ec2Error::InvalidParameterValue(format!("the request body could not be read: {error}"));
            return error_response(&error, &api.next_request_id(), "");
        }
        Err(_) => {
            api.metrics.refused(Refusal::BodyTimeout);
            let error = Ec2Error::Unavailable(format!("the request body did not arrive within {timeout:?}"));
            return error_response(&error, &api.next_request_id(), "");
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(body),
    ))
    .await
}

/// Serves the API on `listener` until `shutdown` completes, then lets
/// the requests in progress finish.
pub async fn serve(
    api: Arc<Api>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http::serve(listener, router(api.clone()), api, shutdown).await;
    Ok(())
}

/// Serves the API over HTTPS on `listener` with `tls` (a server
/// configuration from `tls::server_config`) until `shutdown` completes.
pub async fn serve_tls(
    api: Arc<Api>,
    listener: tokio::net::TcpListener,
    tls: Arc<tls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = https::TlsListener::start(listener, tls)?;
    http::serve(listener, router(api.clone()), api, shutdown).await;
    Ok(())
}

async fn handle(
    AxumState(api): AxumState<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = api.next_request_id();
    let started = std::time::Instant::now();
    let (result, action) = answer(&api, &method, &uri, &headers, &body, &request_id).await;
    let response = match result {
        Ok(xml) => {
            let mut response = xml_response(StatusCode::OK, xml, &request_id);
            response
                .extensions_mut()
                .insert(Answered::new(&action, metrics::OK));
            response
        }
        Err(error) => error_response(&error, &request_id, &action),
    };
    tracing::trace!(%request_id, action, status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    response
}

/// EC2's XML answer for `error`, with its HTTP status.
fn error_response(error: &Ec2Error, request_id: &str, action: &str) -> Response {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::debug!(%request_id, action, code = error.code(), "request refused");
    let mut response = xml_response(status, xml::error_body(error, request_id), request_id);
    response
        .extensions_mut()
        .insert(Answered::new(action, error.code()));
    response
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

async fn answer(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> (Result<String, Ec2Error>, String) {
    let raw_query = uri.query().unwrap_or_default();
    let mut params = Params::parse(raw_query.as_bytes());
    if *method == Method::POST {
        params.extend_from(body);
    } else if *method != Method::GET {
        return (
            Err(Ec2Error::InvalidParameterValue(format!(
                "HTTP method {method} is not supported"
            ))),
            String::new(),
        );
    }
    let action = params.get("Action").unwrap_or_default().to_string();
    let header_list: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let signed = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        raw_query,
        headers: &header_list,
        body,
        params: &params,
    };
    let key = match auth::authenticate(
        &signed,
        |id| api.store.read().access_key(id).cloned(),
        SystemTime::now(),
        api.config.clock_skew,
    ) {
        Ok(key) => key,
        Err(err) => return (Err(err), action),
    };
    // Charged once authenticated, whatever the request then answers, as
    // EC2 does: invalid requests cost the server too.
    if !api.limiter.admit(
        &key.account_id,
        actions::is_mutating(&action),
        std::time::Instant::now(),
    ) {
        api.metrics.refused(Refusal::RateLimit);
        return (Err(Ec2Error::RequestLimitExceeded), action);
    }
    let result = async {
        if action.is_empty() {
            return Err(Ec2Error::MissingParameter("Action".into()));
        }
        if !actions::is_known(&action) {
            return Err(Ec2Error::InvalidAction(action.clone()));
        }
        let mutating = actions::is_mutating(&action);
        if mutating && key.read_only {
            return Err(Ec2Error::UnauthorizedOperation);
        }
        if params.flag("DryRun")? {
            return Err(Ec2Error::DryRunOperation);
        }
        let version = params
            .get("Version")
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_VERSION);
        let ctx = Ctx {
            api,
            key: &key,
            params: &params,
            action: &action,
            version,
            request_id,
        };
        actions::dispatch(&ctx).await
    }
    .await;
    (result, action)
}
