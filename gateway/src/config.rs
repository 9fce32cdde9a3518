//! The gateway's configuration: the `cordon.toml` file (strict serde struct),
//! environment overrides from a map passed in, and the validated runtime config.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::identity::{is_federation_name, is_member_id};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";
pub const CONFIG_FILE: &str = "cordon.toml";

/// `cordon.toml` as written on disk. Relative paths are relative to the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// This gateway's member id, for example `GH`.
    pub member: String,
    /// The federation (SPIFFE trust domain) whose certificates are accepted.
    pub federation: String,
    /// gRPC listen address (mutual TLS only). Port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `sqlite:PATH` (default `sqlite:cordon.db`) or `postgres://…`.
    #[serde(default = "default_database")]
    pub database: String,
    /// The sharing policy: a directory (`*.rego`, `data.json`) or an OPA bundle (`.tar.gz`).
    #[serde(default = "default_policy")]
    pub policy: PathBuf,
    pub tls: TlsFile,
    /// The gateway's Ed25519 key; it signs every indicator it publishes.
    #[serde(default = "default_signing_key")]
    pub signing_key: PathBuf,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub decision_log: DecisionLogFile,
    /// Reload the policy when its files change (it is also reloadable by RPC).
    #[serde(default = "default_true")]
    pub watch_policy: bool,
    /// Federation data: the members whose indicators this gateway may hold, with the public
    /// keys their gateways sign with. An indicator is accepted from a peer only if its
    /// originator is listed here and its signature verifies with one of these keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberFile>,
    /// Partner gateways this gateway follows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerFile>,
    /// The admin listener (plain HTTP, `GET /metrics` only); absent, there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminFile>,
    /// The TAXII 2.1 listener (HTTPS, HTTP/1.1, mutual TLS); absent, there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxii: Option<TaxiiFile>,
    #[serde(default)]
    pub screening: ScreeningFile,
    #[serde(default)]
    pub oversight: OversightFile,
    /// Agencies of this member (`GH/focal-point`) that may retract or supersede any of the
    /// member's indicators; any other agency only those it published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub administrators: Vec<String>,
}

/// `[screening]`: declarations screened against the indicators held, and alerts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreeningFile {
    /// Days a screened declaration stays watched: intelligence arriving within them that
    /// matches it raises an alert. 0: screenings are not watched.
    #[serde(default = "default_watch_days")]
    pub watch_days: u32,
}

impl Default for ScreeningFile {
    fn default() -> Self {
        ScreeningFile {
            watch_days: default_watch_days(),
        }
    }
}

fn default_watch_days() -> u32 {
    90
}

/// Longest watch: ten years.
const MAX_WATCH_DAYS: u32 = 3650;

/// `[oversight]`: the public oversight page on the admin listener (`/oversight`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OversightFile {
    /// Counts below this are suppressed on the page (1 suppresses nothing).
    #[serde(default = "default_suppress_below")]
    pub suppress_below: u64,
}

impl Default for OversightFile {
    fn default() -> Self {
        OversightFile {
            suppress_below: default_suppress_below(),
        }
    }
}

fn default_suppress_below() -> u64 {
    5
}

/// `[admin]`: the admin listener, which serves aggregate metrics and nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// For example `127.0.0.1:9464`; port 0 picks a free port.
    pub listen: String,
}

/// `[taxii]`: the TAXII 2.1 server, on its own HTTPS listener with the gateway's mutual TLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxiiFile {
    /// For example `127.0.0.1:9443`; port 0 picks a free port.
    pub listen: String,
}

/// `[[members]]`: one member of the federation and its gateway's signing keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFile {
    pub id: String,
    /// Ed25519 public keys, 64 hex digits each (`cordon init` prints the new member's). More
    /// than one while a key is rotated.
    pub signing_keys: Vec<String>,
    /// Optional validity windows of some of those keys: an indicator whose `created` time is
    /// outside its key's window is refused (a key retired on a date, or not yet in use).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_windows: Vec<KeyWindowFile>,
    /// Taken out of the roster: its gateway's and agencies' calls are refused, its open
    /// subscriptions end and it is removed from every circle this gateway hubs. Applies
    /// while the gateway runs (the file is watched).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
}

/// `key_windows = [{ key = "<64 hex>", not_before = "RFC 3339", not_after = "RFC 3339" }]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyWindowFile {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

/// `[[peers]]`: a partner gateway to follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    /// The peer's member id; its certificate must name `spiffe://<federation>/member/<id>`.
    pub id: String,
    /// For example `https://127.0.0.1:7443`.
    pub endpoint: String,
    /// Whether to follow the peer's feed (default true). `false` records only its endpoint,
    /// for circles: a hub reaches its members' gateways, and members their hub's, through it.
    #[serde(default = "default_follow")]
    pub follow: bool,
}

fn default_follow() -> bool {
    true
}

/// A partner gateway this gateway follows, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub id: String,
    /// `https://host:port` as written in the config.
    pub endpoint: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// The host, the name the peer's certificate must carry.
    pub host: String,
    /// Whether its feed is followed (`[[peers]] follow`).
    pub follow: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogFile {
    /// Days a stored release decision is kept; 0 keeps decisions forever.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

impl Default for DecisionLogFile {
    fn default() -> Self {
        DecisionLogFile {
            retention_days: default_retention_days(),
        }
    }
}

fn default_retention_days() -> u32 {
    365
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The federation CA: the only root client and peer certificates may chain to.
    pub ca: PathBuf,
    /// The federation CA's certificate revocation list (`cordon ca revoke` writes it); client
    /// certificates it lists are refused in the TLS handshake. Read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Time limit of one policy evaluation, in milliseconds; past it the decision is a deny.
    #[serde(default = "default_policy_time_limit_ms")]
    pub policy_time_limit_ms: u64,
    /// Subscribe calls starting behind the feed head (each re-decides and logs what it reads)
    /// per identity and minute; 0: no limit.
    #[serde(default = "default_subscribe_rereads_per_minute")]
    pub subscribe_rereads_per_minute: u32,
    /// Get calls per identity and minute; 0: no limit.
    #[serde(default = "default_gets_per_minute")]
    pub gets_per_minute: u32,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            policy_time_limit_ms: default_policy_time_limit_ms(),
            subscribe_rereads_per_minute: default_subscribe_rereads_per_minute(),
            gets_per_minute: default_gets_per_minute(),
        }
    }
}

fn default_subscribe_rereads_per_minute() -> u32 {
    DEFAULT_SUBSCRIBE_REREADS_PER_MINUTE
}

fn default_gets_per_minute() -> u32 {
    DEFAULT_GETS_PER_MINUTE
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}
fn default_database() -> String {
    "sqlite:cordon.db".to_string()
}
fn default_signing_key() -> PathBuf {
    PathBuf::from("identity/signing-key.pem")
}
fn default_policy() -> PathBuf {
    PathBuf::from("policy")
}
fn default_policy_time_limit_ms() -> u64 {
    100
}

/// The quotas, per identity and minute; `None` is no limit. A whole minute's quota may be
/// spent at once, then it refills evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub subscribe_rereads_per_minute: Option<std::num::NonZeroU32>,
    pub gets_per_minute: Option<std::num::NonZeroU32>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            subscribe_rereads_per_minute: std::num::NonZeroU32::new(
                DEFAULT_SUBSCRIBE_REREADS_PER_MINUTE,
            ),
            gets_per_minute: std::num::NonZeroU32::new(DEFAULT_GETS_PER_MINUTE),
        }
    }
}

/// Subscribe calls starting behind the head, per identity and minute, unless configured.
pub const DEFAULT_SUBSCRIBE_REREADS_PER_MINUTE: u32 = 600;
/// Get calls per identity and minute, unless configured.
pub const DEFAULT_GETS_PER_MINUTE: u32 = 6_000;

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub member: String,
    pub federation: String,
    pub listen: SocketAddr,
    pub database_url: String,
    pub policy_dir: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub tls_ca: PathBuf,
    /// `[tls] crl`, when set.
    pub tls_crl: Option<PathBuf>,
    pub signing_key: PathBuf,
    pub policy_time_limit: Duration,
    /// None keeps decisions forever.
    pub decision_retention: Option<Duration>,
    pub watch_policy: bool,
    /// The other members' gateway signing keys (`[[members]]`; this member is not listed).
    pub federation_keys: crate::signing::FederationKeys,
    pub peers: Vec<PeerConfig>,
    /// Where the admin listener (`GET /metrics`, plain HTTP) binds; `None`: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Where the TAXII 2.1 listener binds (`[taxii] listen`); `None`: no TAXII server.
    pub taxii_listen: Option<SocketAddr>,
    /// Every member the federation data names (`[[members]]`), this one included.
    pub members: Vec<String>,
    /// How long a screened declaration stays watched.
    pub watch_for: Duration,
    /// Agencies that may retract or supersede any of this member's indicators.
    pub administrators: BTreeSet<String>,
    /// Request-rate limits per identity (`[limits]`).
    pub rate_limits: RateLimits,
    /// Members under `[[members]]` with `suspended = true`.
    pub suspended: BTreeSet<String>,
    /// `[oversight] suppress_below`: counts below it are not shown on the oversight page.
    pub oversight_suppress_below: u64,
}

impl GatewayConfig {
    /// Reads `path`, applies overrides from `environment` (`CORDON_DATABASE_URL`,
    /// `CORDON_LISTEN`, `CORDON_ADMIN_LISTEN`, `CORDON_TAXII_LISTEN`) and validates.
    pub fn load(path: &Path, environment: &HashMap<String, String>) -> Result<GatewayConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let file: ConfigFile =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        GatewayConfig::from_file(file, base, environment)
            .with_context(|| format!("in config {}", path.display()))
    }

    pub fn from_file(
        file: ConfigFile,
        base: &Path,
        environment: &HashMap<String, String>,
    ) -> Result<GatewayConfig> {
        if !is_member_id(&file.member) {
            bail!(
                "member: {:?} is not a member id (2-16 of A-Z, 0-9, '-')",
                file.member
            );
        }
        if !is_federation_name(&file.federation) {
            bail!("federation: {:?} is not a federation name", file.federation);
        }
        let listen_text = environment.get("CORDON_LISTEN").unwrap_or(&file.listen);
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("listen: {listen_text:?} is not an address such as 127.0.0.1:7443")
        })?;
        let database = environment
            .get("CORDON_DATABASE_URL")
            .unwrap_or(&file.database);
        let database_url = resolve_database_url(database, base)?;
        if file.limits.policy_time_limit_ms == 0 || file.limits.policy_time_limit_ms > 10_000 {
            bail!("limits.policy_time_limit_ms: must be between 1 and 10000");
        }
        let federation_keys = federation_keys(&file.members, &file.member)?;
        let peers = peers(&file.peers, &file.member, &federation_keys)?;
        // The environment can also turn the admin listener on where the file has no [admin].
        let admin_text = environment
            .get("CORDON_ADMIN_LISTEN")
            .or(file.admin.as_ref().map(|admin| &admin.listen));
        let admin_listen = admin_text
            .map(|text| {
                text.parse::<SocketAddr>().with_context(|| {
                    format!("admin.listen: {text:?} is not an address such as 127.0.0.1:9464")
                })
            })
            .transpose()?;
        if admin_listen.is_some_and(|admin| admin == listen && admin.port() != 0) {
            bail!("admin.listen: {listen} is already the gRPC listen address");
        }
        let taxii_text = environment
            .get("CORDON_TAXII_LISTEN")
            .or(file.taxii.as_ref().map(|taxii| &taxii.listen));
        let taxii_listen = taxii_text
            .map(|text| {
                text.parse::<SocketAddr>().with_context(|| {
                    format!("taxii.listen: {text:?} is not an address such as 127.0.0.1:9443")
                })
            })
            .transpose()?;
        if let Some(taxii) = taxii_listen.filter(|taxii| taxii.port() != 0) {
            if taxii == listen {
                bail!("taxii.listen: {listen} is already the gRPC listen address");
            }
            if admin_listen == Some(taxii) {
                bail!("taxii.listen: {taxii} is already the admin listen address");
            }
        }
        if !(1..=1_000).contains(&file.oversight.suppress_below) {
            bail!("oversight.suppress_below: must be between 1 and 1000");
        }
        let mut members: Vec<String> = file.members.iter().map(|m| m.id.clone()).collect();
        if !members.contains(&file.member) {
            members.push(file.member.clone());
        }
        members.sort();
        if file.screening.watch_days > MAX_WATCH_DAYS {
            bail!("screening.watch_days: at most {MAX_WATCH_DAYS} (ten years)");
        }
        let mut administrators = BTreeSet::new();
        for (index, name) in file.administrators.iter().enumerate() {
            let identity = crate::identity::Identity::parse(name)
                .map_err(|error| anyhow::anyhow!("administrators[{index}]: {error}"))?;
            if !identity.is_agency_of(&file.member) {
                bail!(
                    "administrators[{index}]: {name:?} is not an agency of member {} (such as {}/focal-point)",
                    file.member,
                    file.member
                );
            }
            administrators.insert(identity.to_string());
        }
        Ok(GatewayConfig {
            member: file.member,
            federation: file.federation,
            listen,
            database_url,
            policy_dir: base.join(file.policy),
            tls_cert: base.join(file.tls.cert),
            tls_key: base.join(file.tls.key),
            tls_ca: base.join(file.tls.ca),
            tls_crl: file.tls.crl.map(|crl| base.join(crl)),
            signing_key: base.join(file.signing_key),
            policy_time_limit: Duration::from_millis(file.limits.policy_time_limit_ms),
            decision_retention: (file.decision_log.retention_days > 0)
                .then(|| Duration::from_secs(u64::from(file.decision_log.retention_days) * 86_400)),
            watch_policy: file.watch_policy,
            federation_keys,
            peers,
            admin_listen,
            taxii_listen,
            members,
            watch_for: Duration::from_secs(u64::from(file.screening.watch_days) * 86_400),
            administrators,
            rate_limits: RateLimits {
                subscribe_rereads_per_minute: std::num::NonZeroU32::new(
                    file.limits.subscribe_rereads_per_minute,
                ),
                gets_per_minute: std::num::NonZeroU32::new(file.limits.gets_per_minute),
            },
            suspended: file
                .members
                .iter()
                .filter(|member| member.suspended)
                .map(|member| member.id.clone())
                .collect(),
            oversight_suppress_below: file.oversight.suppress_below,
        })
    }
}

fn federation_keys(
    members: &[MemberFile],
    own_member: &str,
) -> Result<crate::signing::FederationKeys> {
    let mut keys = crate::signing::FederationKeys::default();
    for (index, member) in members.iter().enumerate() {
        if !is_member_id(&member.id) {
            bail!("members[{index}].id: {:?} is not a member id", member.id);
        }
        if keys.knows(&member.id) {
            bail!("members[{index}].id: member {} is listed twice", member.id);
        }
        if member.id == own_member {
            bail!(
                "members[{index}].id: {own_member} is this gateway's own member; its key is the signing_key"
            );
        }
        if member.signing_keys.is_empty() {
            bail!(
                "members[{index}].signing_keys: member {} has no key",
                member.id
            );
        }
        for (key_index, text) in member.signing_keys.iter().enumerate() {
            let key = crate::signing::parse_public_key(text).map_err(|error| {
                anyhow::anyhow!("members[{index}].signing_keys[{key_index}]: {error}")
            })?;
            if let Some(other) = keys.member_of(&key) {
                bail!(
                    "members[{index}].signing_keys[{key_index}]: the same key is listed for member {other}"
                );
            }
            keys.insert(&member.id, key);
        }
        for (window_index, window) in member.key_windows.iter().enumerate() {
            let path = format!("members[{index}].key_windows[{window_index}]");
            let key = crate::signing::parse_public_key(&window.key)
                .map_err(|error| anyhow::anyhow!("{path}.key: {error}"))?;
            if !keys.is_key_of(&member.id, &key) {
                bail!("{path}.key: not one of members[{index}].signing_keys");
            }
            let at = |name: &str, text: &Option<String>| -> Result<Option<i64>> {
                text.as_deref()
                    .map(|text| {
                        crate::clock::parse_rfc3339(text)
                            .map(|timestamp| crate::clock::micros_of(&timestamp))
                            .ok_or_else(|| {
                                anyhow::anyhow!("{path}.{name}: {text:?} is not an RFC 3339 time")
                            })
                    })
                    .transpose()
            };
            let not_before = at("not_before", &window.not_before)?;
            let not_after = at("not_after", &window.not_after)?;
            if let (Some(from), Some(until)) = (not_before, not_after)
                && from >= until
            {
                bail!("{path}: not_before must be before not_after");
            }
            keys.set_window(&key, not_before, not_after);
        }
    }
    Ok(keys)
}

fn peers(
    peers: &[PeerFile],
    own_member: &str,
    keys: &crate::signing::FederationKeys,
) -> Result<Vec<PeerConfig>> {
    let mut validated: Vec<PeerConfig> = Vec::with_capacity(peers.len());
    for (index, peer) in peers.iter().enumerate() {
        if !is_member_id(&peer.id) {
            bail!("peers[{index}].id: {:?} is not a member id", peer.id);
        }
        if peer.id == own_member {
            bail!("peers[{index}].id: a gateway does not follow itself");
        }
        if validated.iter().any(|other| other.id == peer.id) {
            bail!("peers[{index}].id: peer {} is listed twice", peer.id);
        }
        if !keys.knows(&peer.id) {
            bail!(
                "peers[{index}].id: member {} has no signing key under [[members]], so nothing it sends could be verified",
                peer.id
            );
        }
        let (authority, host) = parse_endpoint(&peer.endpoint)
            .map_err(|error| anyhow::anyhow!("peers[{index}].endpoint: {error}"))?;
        validated.push(PeerConfig {
            id: peer.id.clone(),
            endpoint: peer.endpoint.clone(),
            authority,
            host,
            follow: peer.follow,
        });
    }
    Ok(validated)
}

/// `https://host:port` (no path) into `host:port` and the host.
fn parse_endpoint(endpoint: &str) -> Result<(String, String), String> {
    let rest = endpoint.strip_prefix("https://").ok_or_else(|| {
        format!("{endpoint:?} must start with https:// (peers speak only mutual TLS)")
    })?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{endpoint:?} must be https://host:port with no path"
        ));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{endpoint:?} has no port"))?;
    if port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(format!("{endpoint:?} has no valid port"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{endpoint:?} has no host"));
    }
    Ok((authority.to_string(), host.to_string()))
}

/// SQLite paths in the config are relative to the config file.
fn resolve_database_url(database: &str, base: &Path) -> Result<String> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return Ok(database.to_string());
    }
    let Some(path) = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
    else {
        bail!("database: {database:?} must start with sqlite: or postgres://");
    };
    if path.is_empty() {
        bail!("database: sqlite URL names no file");
    }
    let path = Path::new(path);
    let resolved = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    Ok(format!("sqlite:{}", resolved.display()))
}

#[cfg(test)]
mod tests;
