//! The TAXII 2.1 server: each caller's collection is its release view, in STIX 2.1.
//!
//! Its own HTTPS listener (`[taxii] listen`) speaks HTTP/1.1, because TAXII clients such as
//! Python's `requests` do not speak HTTP/2, with the same mutual TLS as the gRPC listener: the
//! caller is the identity its client certificate names, never anything in the request. Each
//! caller sees one collection, what Subscribe would release to it: every object comes from an
//! event released through [`crate::release`] (hard floor, policy, decision stored before the
//! response), mapped by [`cordon_stix`]. The member's own agencies may add objects to it; they
//! are published as a Publish call would be (validated, signed by the gateway).
//!
//! Routes, under the API root `/cordon/`: discovery `/taxii2/`, the API root, `status/{id}/`,
//! `collections/`, `collections/{id}/`, `collections/{id}/objects/` (GET, POST),
//! `collections/{id}/objects/{object_id}/`, `.../versions/` and `collections/{id}/manifest/`.

mod status;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cordon_proto::v1::Indicator;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::feed::GatewayState;
use crate::identity::Identity;
use crate::metrics::RateLimitedCall;

/// The TAXII 2.1 media type of every response and of added objects.
pub const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";
/// The media type of the STIX objects a collection holds.
pub const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";
/// The API root's path.
pub const API_ROOT: &str = "/cordon/";
/// The largest request body accepted (an add-objects envelope).
pub const MAX_CONTENT_LENGTH: usize = 10 * 1024 * 1024;
/// How long an add-objects body may take to arrive.
pub const BODY_TIME: std::time::Duration = std::time::Duration::from_secs(60);
/// Objects one add-objects request may carry.
pub const MAX_OBJECTS_PER_ADD: usize = 10_000;
/// Objects per page when the client sets no `limit`, and the most it may ask for.
pub const DEFAULT_PAGE: usize = 1_000;
pub const MAX_PAGE: usize = 10_000;

/// Who is on the other end of a TAXII connection: the identity its verified client
/// certificate names, or why it names none this gateway accepts.
#[derive(Debug, Clone)]
pub struct Peer(Result<Identity, String>);

/// What every handler shares. The gateway state is held weakly: a connection left open (a
/// body trickled in, a keep-alive) never keeps a stopping gateway's state, and so its decision
/// log, alive; a request arriving after the state is gone gets 503.
pub struct Taxii {
    state: std::sync::Weak<GatewayState>,
    member: String,
    federation: String,
    /// The objects every view starts with (the vocabulary and the identities of the members
    /// `[[members]]` names, this one included), built once.
    pub prefix: Vec<Value>,
    statuses: status::Statuses,
    /// Signs `next` tokens, so that a page can be resumed only where this gateway said, by
    /// the caller it said it to. Derived from the gateway's signing key (an Ed25519 signature
    /// is deterministic), so replicas of one member accept each other's tokens.
    tokens: ring::hmac::Key,
    /// Tokens already used, per caller: a token used again (or older than [`TOKEN_FREE_FOR`])
    /// counts against the re-read quota, as a read from the start does.
    used: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<String>>>,
}

/// How long a `next` token resumes a read without counting against the re-read quota.
pub const TOKEN_FREE_FOR: std::time::Duration = std::time::Duration::from_secs(600);
/// Tokens remembered per caller as used.
const USED_TOKENS_KEPT: usize = 4_096;

impl std::fmt::Debug for Taxii {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Taxii")
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

/// A TAXII error response: an error object with the HTTP status.
#[derive(Debug)]
pub struct TaxiiError {
    status: StatusCode,
    title: &'static str,
    description: String,
}

impl TaxiiError {
    pub fn new(status: StatusCode, title: &'static str, description: impl Into<String>) -> Self {
        TaxiiError {
            status,
            title,
            description: description.into(),
        }
    }

    fn not_found(description: impl Into<String>) -> Self {
        TaxiiError::new(StatusCode::NOT_FOUND, "Not found", description)
    }

    fn bad_request(description: impl Into<String>) -> Self {
        TaxiiError::new(StatusCode::BAD_REQUEST, "Bad request", description)
    }
}

impl From<tonic::Status> for TaxiiError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let (code, title) = match status.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => {
                (StatusCode::BAD_REQUEST, "Bad request")
            }
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "Unauthenticated"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "Forbidden"),
            Code::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
        };
        TaxiiError::new(code, title, status.message())
    }
}

impl IntoResponse for TaxiiError {
    fn into_response(self) -> Response {
        let body = json!({
            "title": self.title,
            "description": self.description,
            "http_status": self.status.as_u16().to_string(),
        });
        taxii_json(self.status, &body, HeaderMap::new())
    }
}

fn taxii_json(status: StatusCode, body: &Value, mut headers: HeaderMap) -> Response {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TAXII_MEDIA_TYPE),
    );
    (status, headers, body.to_string()).into_response()
}

type Reply = Result<Response, TaxiiError>;

/// Serves TAXII on the TLS connections of `incoming` (each handshake done on its own task by
/// the server's listener) until `shutdown` turns true.
pub fn serve(
    incoming: impl futures::Stream<Item = std::io::Result<TlsStream>> + Send + 'static,
    taxii: Arc<Taxii>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    let federation = taxii.federation.clone();
    let connections = TaxiiListener {
        incoming: Box::pin(incoming),
        federation,
    };
    let router = router(taxii);
    tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<Peer>();
        let stopped = async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        };
        if let Err(error) = axum::serve(connections, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(%error, "TAXII listener failed");
        }
    })
}

impl Taxii {
    pub fn new(state: &Arc<GatewayState>, members: Vec<String>) -> Arc<Taxii> {
        let seed = state
            .signing_key
            .sign_bytes(b"cordon taxii next tokens/1\n");
        let tokens = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            ring::digest::digest(&ring::digest::SHA256, &seed).as_ref(),
        );
        Arc::new(Taxii {
            state: Arc::downgrade(state),
            member: state.member.clone(),
            federation: state.federation.clone(),
            prefix: view::prefix(&members),
            statuses: status::Statuses::default(),
            tokens,
            used: Default::default(),
        })
    }

    /// Whether `token`, from `caller`, resumes a read for free: first use, and recent.
    fn first_use(&self, caller: &Identity, token: &str, issued: u64) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        if now.saturating_sub(issued) > TOKEN_FREE_FOR.as_secs() {
            return false;
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let mine = used.entry(caller.to_string()).or_default();
        if mine.iter().any(|seen| seen == token) {
            return false;
        }
        if mine.len() >= USED_TOKENS_KEPT {
            mine.pop_front();
        }
        mine.push_back(token.to_string());
        true
    }

    fn state(&self) -> Result<Arc<GatewayState>, TaxiiError> {
        self.state.upgrade().ok_or_else(|| {
            TaxiiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "the gateway is stopping",
            )
        })
    }
}

pub type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// The TLS connections of the TAXII listener, each with the identity of its client.
struct TaxiiListener {
    incoming:
        std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<TlsStream>> + Send + 'static>>,
    federation: String,
}

impl axum::serve::Listener for TaxiiListener {
    type Io = TlsStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use futures::StreamExt as _;
        loop {
            match self.incoming.next().await {
                Some(Ok(stream)) => {
                    let identity = match stream.get_ref().1.peer_certificates() {
                        Some([leaf, ..]) => {
                            Identity::from_verified_certificate(leaf, &self.federation)
                                .map_err(|error| format!("client certificate refused: {error}"))
                        }
                        _ => Err("a client certificate is required".to_string()),
                    };
                    return (stream, Peer(identity));
                }
                Some(Err(error)) => tracing::warn!(%error, "TAXII connection failed"),
                // The accept loop ended: the gateway is stopping.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer(Err("the listener itself".into())))
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TaxiiListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TaxiiListener>) -> Self {
        stream.remote_addr().clone()
    }
}

fn router(taxii: Arc<Taxii>) -> Router {
    Router::new()
        .route("/taxii2/", get(discovery))
        .route(API_ROOT, get(api_root))
        .route("/cordon/status/{status}/", get(status_resource))
        .route("/cordon/collections/", get(collections))
        .route("/cordon/collections/{collection}/", get(collection))
        .route(
            "/cordon/collections/{collection}/objects/",
            get(get_objects).post(add_objects),
        )
        .route(
            "/cordon/collections/{collection}/objects/{object}/",
            get(get_object),
        )
        .route(
            "/cordon/collections/{collection}/objects/{object}/versions/",
            get(object_versions),
        )
        .route("/cordon/collections/{collection}/manifest/", get(manifest))
        .fallback(|| async {
            TaxiiError::not_found("no such TAXII resource; discovery is at /taxii2/")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_CONTENT_LENGTH))
        .with_state(taxii)
}

/// The caller, admitted: a verified identity of a member not suspended, and a request that
/// accepts TAXII 2.1.
fn admit(
    taxii: &Taxii,
    peer: &Peer,
    headers: &HeaderMap,
) -> Result<(Identity, Arc<GatewayState>), TaxiiError> {
    let caller = peer
        .0
        .clone()
        .map_err(|reason| TaxiiError::new(StatusCode::FORBIDDEN, "Forbidden", reason))?;
    let state = taxii.state()?;
    state.roster.admit(caller.member())?;
    if let Some(accept) = headers.get(header::ACCEPT) {
        let accept = accept.to_str().unwrap_or_default();
        let ok = accept.split(',').any(|item| {
            let item: String = item.chars().filter(|c| !c.is_whitespace()).collect();
            item == TAXII_MEDIA_TYPE
                || item.starts_with(&format!("{TAXII_MEDIA_TYPE};"))
                || item == "application/taxii+json"
                || item.starts_with("*/*")
                || item.starts_with("application/*")
        });
        if !ok {
            return Err(TaxiiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "Not acceptable",
                format!("Accept: this server answers in {TAXII_MEDIA_TYPE}"),
            ));
        }
    }
    Ok((caller, state))
}

/// The one collection of `caller`: its release view. The id is derived from the member and
/// the caller, so it stays the same across restarts.
fn collection_id(member: &str, caller: &Identity) -> String {
    let id = cordon_stix::ids::domain_id("x-taxii-collection", &format!("{member}\n{caller}"));
    id.trim_start_matches("x-taxii-collection--").to_string()
}

fn own_collection(taxii: &Taxii, caller: &Identity, id: &str) -> Result<(), TaxiiError> {
    if id == collection_id(&taxii.member, caller) {
        Ok(())
    } else {
        Err(TaxiiError::not_found(format!(
            "no collection {id} for {caller}; GET {API_ROOT}collections/ lists yours"
        )))
    }
}

fn collection_resource(taxii: &Taxii, caller: &Identity) -> Value {
    let member = &taxii.member;
    json!({
        "id": collection_id(member, caller),
        "title": format!("{member} release view for {caller}"),
        "description": format!(
            "The indicators gateway {member} releases to {caller} under its sharing policy, \
             as STIX 2.1. Every read is decided and logged as a Subscribe would be."
        ),
        "can_read": true,
        "can_write": caller.is_agency_of(member),
        "media_types": [STIX_MEDIA_TYPE],
    })
}

async fn discovery(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Reply {
    admit(&taxii, &peer, &headers)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let root = format!("https://{host}{API_ROOT}");
    let member = &taxii.member;
    let body = json!({
        "title": format!("Cordon gateway {member}"),
        "description": "TAXII 2.1 view of a Cordon gateway's releases; mutual TLS required",
        "default": root,
        "api_roots": [root],
    });
    Ok(taxii_json(StatusCode::OK, &body, HeaderMap::new()))
}

async fn api_root(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Reply {
    admit(&taxii, &peer, &headers)?;
    let body = json!({
        "title": format!("Cordon gateway {}", taxii.member),
        "versions": [TAXII_MEDIA_TYPE],
        "max_content_length": MAX_CONTENT_LENGTH,
    });
    Ok(taxii_json(StatusCode::OK, &body, HeaderMap::new()))
}

async fn collections(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Reply {
    let (caller, _) = admit(&taxii, &peer, &headers)?;
    let body = json!({ "collections": [collection_resource(&taxii, &caller)] });
    Ok(taxii_json(StatusCode::OK, &body, HeaderMap::new()))
}

async fn collection(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let (caller, _) = admit(&taxii, &peer, &headers)?;
    own_collection(&taxii, &caller, &id)?;
    Ok(taxii_json(
        StatusCode::OK,
        &collection_resource(&taxii, &caller),
        HeaderMap::new(),
    ))
}

/// `X-TAXII-Date-Added-First` and `-Last` for a page.
fn date_headers(first: Option<&str>, last: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-taxii-date-added-first", first),
        ("x-taxii-date-added-last", last),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    headers
}

async fn get_objects(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    let (caller, state) = admit(&taxii, &peer, &headers)?;
    own_collection(&taxii, &caller, &id)?;
    let query = view::Query::parse(query.as_deref(), &taxii.tokens, &caller.to_string())?;
    let page = read_page(&taxii, &state, &caller, &query).await?;
    let objects = page.items.iter().map(|item| item.object.clone()).collect();
    Ok(envelope(&page, objects))
}

/// An envelope (get objects) or manifest of `page`: `more`, `next`, and the page's first and
/// last `date_added` in the headers.
fn envelope(page: &view::Page, objects: Vec<Value>) -> Response {
    let mut body = json!({ "more": page.more, "objects": objects });
    if let Some(next) = &page.next {
        body["next"] = json!(next);
    }
    let (first, last) = page.date_range();
    taxii_json(
        StatusCode::OK,
        &body,
        date_headers(first.as_deref(), last.as_deref()),
    )
}

async fn manifest(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    let (caller, state) = admit(&taxii, &peer, &headers)?;
    own_collection(&taxii, &caller, &id)?;
    let query = view::Query::parse(query.as_deref(), &taxii.tokens, &caller.to_string())?;
    let page = read_page(&taxii, &state, &caller, &query).await?;
    let records: Vec<Value> = page
        .items
        .iter()
        .map(|item| {
            json!({
                "id": item.object["id"],
                "date_added": item.date_added(),
                "version": item.version(),
                "media_type": STIX_MEDIA_TYPE,
            })
        })
        .collect();
    Ok(envelope(&page, records))
}

/// A page of the view. A read that starts from the beginning (no `next`) decides again what
/// it reads, so it takes from the caller's quota of re-reads as a Subscribe would; so does one
/// that resumes with a token used before or given more than [`TOKEN_FREE_FOR`] ago.
async fn read_page(
    taxii: &Taxii,
    state: &GatewayState,
    caller: &Identity,
    query: &view::Query,
) -> Result<view::Page, TaxiiError> {
    let free = query
        .next
        .as_ref()
        .is_some_and(|next| taxii.first_use(caller, &next.token, next.issued));
    if !free {
        state
            .rates
            .admit(RateLimitedCall::SubscribeReread, caller, &state.metrics)?;
    }
    view::page(taxii, state, caller, query).await
}

async fn get_object(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path((id, object)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    let (caller, state) = admit(&taxii, &peer, &headers)?;
    own_collection(&taxii, &caller, &id)?;
    let query = view::Query::parse(query.as_deref(), &taxii.tokens, &caller.to_string())?;
    let versions = view::object_versions(&taxii, &state, &caller, &object, &query).await?;
    let objects: Vec<&Value> = versions.iter().map(|item| &item.object).collect();
    Ok(dated(
        &versions,
        &json!({ "more": false, "objects": objects }),
    ))
}

/// `body` with the first and last `date_added` of `versions` in the headers.
fn dated(versions: &[view::Item], body: &Value) -> Response {
    let first = versions.first().map(view::Item::date_added);
    let last = versions.last().map(view::Item::date_added);
    taxii_json(
        StatusCode::OK,
        body,
        date_headers(first.as_deref(), last.as_deref()),
    )
}

async fn object_versions(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path((id, object)): Path<(String, String)>,
    headers: HeaderMap,
) -> Reply {
    let (caller, state) = admit(&taxii, &peer, &headers)?;
    own_collection(&taxii, &caller, &id)?;
    let all = view::Query {
        version: view::Versions::All,
        ..view::Query::default()
    };
    let versions = view::object_versions(&taxii, &state, &caller, &object, &all).await?;
    let list: Vec<String> = versions.iter().map(view::Item::version).collect();
    Ok(dated(
        &versions,
        &json!({ "more": false, "versions": list }),
    ))
}

async fn status_resource(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let (caller, _) = admit(&taxii, &peer, &headers)?;
    let status = taxii
        .statuses
        .get(&caller, &id)
        .ok_or_else(|| TaxiiError::not_found(format!("no status {id} for {caller}")))?;
    Ok(taxii_json(StatusCode::OK, &status, HeaderMap::new()))
}

/// Adds objects: the envelope's indicators are published as one Publish call of the caller
/// (validated, signed by this gateway, all or nothing); what does not map is reported in the
/// status resource's failures. A body that is not a STIX 2.1 envelope stores nothing.
async fn add_objects(
    State(taxii): State<Arc<Taxii>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Reply {
    let (caller, state) = admit(&taxii, &peer, &headers)?;
    own_collection(&taxii, &caller, &id)?;
    if !caller.is_agency_of(&taxii.member) {
        return Err(TaxiiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "the collection is read-only for {caller}: only agencies of member {} add objects",
                taxii.member
            ),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>();
    if content_type != TAXII_MEDIA_TYPE {
        return Err(TaxiiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!("Content-Type: objects are added as {TAXII_MEDIA_TYPE}, not {content_type:?}"),
        ));
    }
    // The body is read only once the caller may add, only up to max_content_length and
    // within BODY_TIME, and without holding the gateway's state (a body trickled in must not
    // keep a stopping gateway alive).
    drop(state);
    let body = tokio::time::timeout(
        BODY_TIME,
        axum::body::to_bytes(request.into_body(), MAX_CONTENT_LENGTH),
    )
    .await
    .map_err(|_| {
        TaxiiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
            format!("body: not received within {} s", BODY_TIME.as_secs()),
        )
    })?
    .map_err(|_| {
        TaxiiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            format!("body: not read within max_content_length ({MAX_CONTENT_LENGTH} bytes)"),
        )
    })?;
    let state = taxii.state()?;
    let envelope: Value = serde_json::from_slice(&body)
        .map_err(|error| TaxiiError::bad_request(format!("body: not JSON: {error}")))?;
    match envelope["objects"].as_array().map(Vec::len) {
        Some(0) => return Err(TaxiiError::bad_request("objects: empty")),
        Some(count) if count > MAX_OBJECTS_PER_ADD => {
            return Err(TaxiiError::bad_request(format!(
                "objects: {count} objects; at most {MAX_OBJECTS_PER_ADD} per request"
            )));
        }
        _ => {}
    }
    let import = cordon_stix::read_envelope(&envelope)
        .map_err(|error| TaxiiError::bad_request(error.to_string()))?;
    let mut failures: Vec<Value> = import
        .unmapped
        .iter()
        .map(|u| json!({"id": u.id, "message": u.reason}))
        .collect();
    let mut indicators = Vec::new();
    let mut stix_ids = Vec::new();
    for imported in import.indicators {
        if imported.revoked {
            failures.push(json!({
                "id": imported.stix_id,
                "message": "a revoked indicator is not published; retract with `cordon retract`",
            }));
            continue;
        }
        match serde_json::from_value::<Indicator>(imported.indicator) {
            Ok(indicator) => {
                indicators.push(indicator);
                stix_ids.push(imported.stix_id);
            }
            Err(error) => failures.push(json!({
                "id": imported.stix_id,
                "message": format!("not a Cordon indicator: {error}"),
            })),
        }
    }
    let total = stix_ids.len() + failures.len();
    let mut successes = Vec::new();
    if !indicators.is_empty() {
        let published = state.publish(&caller, indicators).await?;
        for (stix_id, accepted) in stix_ids.iter().zip(&published.accepted) {
            let mut message = format!(
                "published as Cordon indicator {} (sequence {}, STIX id {})",
                accepted.id,
                accepted.sequence,
                cordon_stix::indicator_id(&accepted.id)
            );
            for warning in &accepted.warnings {
                message.push_str("; warning: ");
                message.push_str(warning);
            }
            successes.push(json!({ "id": stix_id, "message": message }));
        }
    }
    let status = taxii.statuses.insert(
        &caller,
        json!({
            "status": "complete",
            "request_timestamp": crate::clock::now_rfc3339(),
            "total_count": total,
            "success_count": successes.len(),
            "successes": successes,
            "failure_count": failures.len(),
            "failures": failures,
            "pending_count": 0,
        }),
    );
    Ok(taxii_json(StatusCode::ACCEPTED, &status, HeaderMap::new()))
}
