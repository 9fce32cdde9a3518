//! Starting a gateway: storage, policy, the mutual-TLS gRPC listener with the
//! indicator service, health checking and reflection, and the optional admin
//! listener. No plaintext listener serves indicators or accepts requests: the
//! admin listener (plain HTTP) answers only `GET /metrics` with aggregate counters.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cordon_indicator::Limits;
use cordon_policy::Policy;
use cordon_proto::v1::alert_service_server::AlertServiceServer;
use cordon_proto::v1::federation_service_server::FederationServiceServer;
use cordon_proto::v1::indicator_service_server::IndicatorServiceServer;
use cordon_proto::v1::policy_service_server::PolicyServiceServer;
use cordon_proto::v1::screening_service_server::ScreeningServiceServer;
use cordon_storage::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};

use crate::config::GatewayConfig;
use crate::federation::TlsFiles;
use crate::federation::{Federation, FederationApi, FollowerContext};
use crate::feed::{GatewayState, IndicatorApi};
use crate::metrics::Metrics;
use crate::policy::{PolicyApi, PolicyManager, load_checked_policy};
use crate::release::DecisionLog;
use crate::release::{DecisionSink, Releaser};

/// Concurrent gRPC calls (streams) on one connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// A client that does not finish its TLS handshake in this time is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the policy of `config`, refusing to start on one that does not load
/// or fails its own tests.
pub fn load_policy(config: &GatewayConfig) -> Result<Policy> {
    load_checked_policy(&config.policy_dir, config.policy_time_limit)
        .map_err(|reason| anyhow::anyhow!("policy {}: {reason}", config.policy_dir.display()))
}

/// The server's TLS: its own identity, and client certificates required to chain to the
/// federation CA; with `[tls] crl`, certificates the CA revoked are refused in the handshake
/// (rustls' WebPKI client verifier with the CRL, the handshakes done here). The acceptor is
/// shared: a new CRL replaces it while the gateway runs ([`watch_crl`]).
pub enum ServerTls {
    Tonic(ServerTlsConfig),
    WithCrl(SharedAcceptor),
}

/// The application protocol of the TAXII listener.
const TAXII_ALPN: &[u8] = b"http/1.1";

/// The TLS acceptor in use; each new connection takes the one current when it arrives.
pub type SharedAcceptor = Arc<std::sync::RwLock<tokio_rustls::TlsAcceptor>>;

pub fn server_tls(config: &GatewayConfig) -> Result<ServerTls> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let Some(crl_path) = &config.tls_crl else {
        let identity = TlsIdentity::from_pem(read(&config.tls_cert)?, read(&config.tls_key)?);
        let ca = Certificate::from_pem(read(&config.tls_ca)?);
        return Ok(ServerTls::Tonic(
            ServerTlsConfig::new()
                .identity(identity)
                .client_ca_root(ca)
                .timeout(TLS_HANDSHAKE_TIMEOUT),
        ));
    };
    let files = TlsFiles {
        cert: config.tls_cert.clone(),
        key: config.tls_key.clone(),
        ca: config.tls_ca.clone(),
        crl: Some(crl_path.clone()),
    };
    Ok(ServerTls::WithCrl(Arc::new(std::sync::RwLock::new(
        crl_acceptor(&files)?,
    ))))
}

/// A TLS acceptor for `files`, refusing client certificates revoked by `files.crl`.
fn crl_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor> {
    acceptor(files, b"h2")
}

/// A TLS acceptor for `files` that requires a client certificate of the federation CA (not
/// revoked by `files.crl`, when set) and offers the application protocol `alpn`.
fn acceptor(files: &TlsFiles, alpn: &[u8]) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let pem_error = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |error: rustls::pki_types::pem::Error| anyhow::anyhow!("{path}: {error}")
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem_error(&files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(&files.cert))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem_error(&files.key))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.ca).map_err(pem_error(&files.ca))? {
        roots
            .add(ca.map_err(pem_error(&files.ca))?)
            .with_context(|| format!("{}: not a CA certificate", files.ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    if let Some(crl_path) = &files.crl {
        verifier = verifier.with_crls(crate::federation::peer_tls::read_crls(crl_path)?);
    }
    let verifier = verifier.build().with_context(|| match &files.crl {
        Some(crl_path) => format!("tls.crl: {}", crl_path.display()),
        None => "the client certificate verifier".to_string(),
    })?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the gateway's TLS certificate and key")?;
    server.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// Watches the `[tls] crl` file: each change that reads as a CRL replaces the acceptor, so
/// that certificates revoked since the start are refused from the next handshake on; one that
/// does not read keeps the acceptor in use (logged).
fn watch_crl(
    files: TlsFiles,
    acceptors: Vec<(SharedAcceptor, &'static [u8])>,
) -> Result<crate::file_watch::FileWatch> {
    let crl_path = files.crl.clone().context("tls.crl: not set")?;
    let watched = crl_path.clone();
    crate::file_watch::watch_file(&watched, move || {
        for (acceptor, alpn) in &acceptors {
            replace_acceptor(&files, acceptor, alpn, &crl_path);
        }
    })
}

fn replace_acceptor(
    files: &TlsFiles,
    acceptor: &SharedAcceptor,
    alpn: &[u8],
    crl_path: &std::path::Path,
) {
    match self::acceptor(files, alpn) {
        Ok(fresh) => {
            *acceptor
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
            tracing::info!(crl = %crl_path.display(), "CRL read again; new handshakes check it");
        }
        Err(error) => tracing::error!(
            crl = %crl_path.display(),
            error = format!("{error:#}"),
            "the changed CRL does not read; the one read before stays in use"
        ),
    }
}

/// TLS connections accepted by `acceptor`, each handshake on its own task and bounded by
/// [`TLS_HANDSHAKE_TIMEOUT`], so that a slow or refused client holds up no one.
fn tls_incoming(
    listener: TcpListener,
    acceptor: SharedAcceptor,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>
{
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                // The server stopped: close the listener.
                () = sender.closed() => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if stream.set_nodelay(true).is_err() {
                continue;
            }
            let acceptor = acceptor
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            let accepted = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = accepted.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => {
                        tracing::info!(%error, "TLS handshake refused");
                    }
                    Err(_) => tracing::info!("TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// A gateway running in this process.
#[derive(Debug)]
pub struct RunningGateway {
    pub address: SocketAddr,
    /// The admin listener's address (`GET /metrics`), when `[admin]` configures one.
    pub admin_address: Option<SocketAddr>,
    /// The TAXII 2.1 listener's address, when `[taxii]` configures one.
    pub taxii_address: Option<SocketAddr>,
    taxii_task: Option<JoinHandle<()>>,
    pub metrics: Arc<Metrics>,
    pub state: Arc<GatewayState>,
    pub policy_manager: Arc<PolicyManager>,
    /// The followers of the configured peers.
    pub federation: Arc<Federation>,
    followers: Vec<JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
    stopping: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
    admin_task: Option<JoinHandle<()>>,
    decision_writer: JoinHandle<()>,
    screening_task: JoinHandle<()>,
    roster_task: JoinHandle<()>,
    /// Holds the gateway state (and so the decision log's sender) until it stops.
    dispatcher_task: JoinHandle<()>,
    _watcher: Option<notify::RecommendedWatcher>,
    _crl_watcher: Option<crate::file_watch::FileWatch>,
}

impl RunningGateway {
    /// Stops accepting, lets open calls finish, and waits.
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.stopping.send(true);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.await.context("gateway task panicked")??;
        if let Some(admin) = self.admin_task.take() {
            // A scraper's idle keep-alive connection must not hold up shutdown.
            let abort = admin.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), admin)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Some(taxii) = self.taxii_task.take() {
            // An idle keep-alive connection must not hold up shutdown.
            let abort = taxii.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), taxii)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for follower in std::mem::take(&mut self.followers) {
            let _ = follower.await;
        }
        self.state.circles.stopped().await;
        // The server's handlers held the last decision log senders; once they
        // are gone the writer drains what is queued and ends.
        let RunningGateway {
            state,
            decision_writer,
            screening_task,
            roster_task,
            dispatcher_task,
            ..
        } = self;
        let _ = dispatcher_task.await;
        let _ = screening_task.await;
        let _ = roster_task.await;
        let store = state.store.clone();
        drop(state);
        let _ = decision_writer.await;
        store.close().await;
        Ok(())
    }

    /// Waits until the server ends by itself (an error) or `signal` fires.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<()> {
        tokio::select! {
            result = &mut self.task => return result.context("gateway task panicked")?,
            () = signal => {}
        }
        self.stop().await
    }
}

/// Opens storage, loads the policy, binds the listener and starts serving.
pub async fn start(
    config: &GatewayConfig,
    sinks: Vec<Arc<dyn DecisionSink>>,
) -> Result<RunningGateway> {
    start_with(config, None, sinks).await
}

/// As [`start`], on a listener the caller bound (`config.listen` is not used), so that
/// gateways that name each other as peers can all know their addresses before any starts.
pub async fn start_on(
    config: &GatewayConfig,
    listener: TcpListener,
    sinks: Vec<Arc<dyn DecisionSink>>,
) -> Result<RunningGateway> {
    start_with(config, Some(listener), sinks).await
}

async fn start_with(
    config: &GatewayConfig,
    listener: Option<TcpListener>,
    sinks: Vec<Arc<dyn DecisionSink>>,
) -> Result<RunningGateway> {
    let policy = load_policy(config)?;
    // A copy of a held indicator that arrives with other fields withheld is the same one.
    cordon_storage::judge_same_indicator_by(crate::signing::same_signed_indicator);
    let signing_key = Arc::new(crate::signing::SigningKey::load(
        &config.signing_key,
        &config.member,
    )?);
    let tls = server_tls(config)?;
    let tls_files = TlsFiles {
        cert: config.tls_cert.clone(),
        key: config.tls_key.clone(),
        ca: config.tls_ca.clone(),
        crl: config.tls_crl.clone(),
    };
    // The TAXII listener's acceptor: the same identities, HTTP/1.1.
    let taxii_acceptor: Option<SharedAcceptor> = match config.taxii_listen {
        Some(_) => Some(Arc::new(std::sync::RwLock::new(acceptor(
            &tls_files, TAXII_ALPN,
        )?))),
        None => None,
    };
    // A CRL replaced while the gateway runs is checked from the next handshake on.
    let mut watched_acceptors: Vec<(SharedAcceptor, &'static [u8])> = Vec::new();
    if let ServerTls::WithCrl(acceptor) = &tls {
        watched_acceptors.push((acceptor.clone(), b"h2"));
    }
    if let Some(acceptor) = &taxii_acceptor
        && config.tls_crl.is_some()
    {
        watched_acceptors.push((acceptor.clone(), TAXII_ALPN));
    }
    let crl_watcher = if watched_acceptors.is_empty() {
        None
    } else {
        Some(watch_crl(tls_files.clone(), watched_acceptors).context("watching tls.crl")?)
    };
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| format!("opening storage {}", redact_url(&config.database_url)))?;
    let listener = match listener {
        Some(listener) => listener,
        None => TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?,
    };
    let address = listener.local_addr()?;
    let admin_listener = match config.admin_listen {
        Some(admin) => Some(crate::metrics::bind_admin(admin).await?),
        None => None,
    };
    let admin_address = admin_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let taxii_listener = match config.taxii_listen {
        Some(taxii) => Some(
            TcpListener::bind(taxii)
                .await
                .with_context(|| format!("binding taxii.listen {taxii}"))?,
        ),
        None => None,
    };
    let taxii_address = taxii_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    tracing::info!(member = %config.member, %address, policy_revision = %policy.revision(), "gateway listening (mutual TLS)");
    let metrics = Arc::new(Metrics::new());
    metrics.attach_feed_head(store.watch_head());
    let releaser = Arc::new(Releaser::with_metrics(
        config.member.clone(),
        policy,
        sinks,
        metrics.clone(),
    ));
    let (stopping, stopping_signal) = tokio::sync::watch::channel(false);
    let (decision_log, decision_writer) =
        DecisionLog::start_with_metrics(store.clone(), config.decision_retention, metrics.clone());
    // The policy in force from this start, in the audit log before anything is served.
    store
        .audit_append(&[crate::policy::activation_entry(
            releaser.policy().revision(),
        )])
        .await
        .context("recording the policy's activation in the audit log")?;
    let policy_manager = Arc::new(
        PolicyManager::new(
            config.policy_dir.clone(),
            config.policy_time_limit,
            releaser.clone(),
        )
        .recording_activations(store.clone()),
    );
    let watcher = if config.watch_policy {
        Some(
            policy_manager
                .watch()
                .with_context(|| format!("watching {}", config.policy_dir.display()))?,
        )
    } else {
        None
    };
    let circles = crate::circle::Circles::start(
        crate::circle::CircleContext {
            member: config.member.clone(),
            federation: config.federation.clone(),
            store: store.clone(),
            pinned: crate::circle::mls::PinnedKeys {
                own_member: config.member.clone(),
                own_key: signing_key.public_key().to_vec(),
                keys: Arc::new(config.federation_keys.clone()),
            },
            signing_key: signing_key.clone(),
            peers: config.peers.clone(),
            tls: TlsFiles {
                cert: config.tls_cert.clone(),
                key: config.tls_key.clone(),
                ca: config.tls_ca.clone(),
                crl: config.tls_crl.clone(),
            },
            releaser: releaser.clone(),
            decision_log: decision_log.clone(),
            limits: Limits::default(),
        },
        stopping_signal.clone(),
    )
    .await
    .context("loading circles")?;
    let (screening, screening_task) = crate::screening::Screening::start(
        crate::screening::ScreeningContext {
            member: config.member.clone(),
            store: store.clone(),
            releaser: releaser.clone(),
            decision_log: decision_log.clone(),
            metrics: metrics.clone(),
            watch_for: config.watch_for,
        },
        stopping_signal.clone(),
    );
    let roster = crate::roster::Roster::new(config.suspended.clone());
    let roster_task = crate::roster::remove_from_circles(
        roster.clone(),
        circles.clone(),
        config.member.clone(),
        stopping_signal.clone(),
    );
    let state = Arc::new(GatewayState {
        roster: roster.clone(),
        circles: circles.clone(),
        member: config.member.clone(),
        federation: config.federation.clone(),
        store: store.clone(),
        releaser,
        decision_log,
        signing_key,
        limits: Limits::default(),
        shutdown: stopping_signal,
        open_subscriptions: Default::default(),
        metrics: metrics.clone(),
        administrators: config.administrators.clone(),
        rates: crate::feed::rates::RequestRates::new(config.rate_limits),
        dispatcher: crate::feed::dispatch::Dispatcher::new(*store.watch_head().borrow()),
    });
    let dispatcher_task = tokio::spawn(state.dispatcher.clone().run(state.clone()));
    let (federation, followers) = crate::federation::start(
        FollowerContext {
            member: config.member.clone(),
            federation: config.federation.clone(),
            store: store.clone(),
            keys: Arc::new(config.federation_keys.clone()),
            limits: Limits::default(),
            tls: TlsFiles {
                cert: config.tls_cert.clone(),
                key: config.tls_key.clone(),
                ca: config.tls_ca.clone(),
                crl: config.tls_crl.clone(),
            },
            metrics: metrics.clone(),
        },
        &config.peers,
        state.shutdown.clone(),
    );
    metrics.attach_followers(federation.clone());
    let audit_api = crate::audit::AuditApi::new(
        &config.member,
        &config.federation,
        state.store.clone(),
        state.signing_key.clone(),
        config.administrators.clone(),
    )
    .context("the audit log's checkpoint signer")?;
    let admin_task = admin_listener
        .zip(admin_address)
        .map(|(listener, address)| {
            tracing::info!(%address, "admin listener (plain HTTP: GET /metrics, /oversight, /oversight.json)");
            let mut stopping = state.shutdown.clone();
            let metrics = metrics.clone();
            let oversight = Arc::new(crate::oversight::Oversight::new(
                state.store.clone(),
                &config.member,
                config.peers.iter().map(|peer| peer.id.clone()).collect(),
                audit_api.signer.clone(),
                config.oversight_suppress_below,
            ));
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopping.wait_for(|stopping| *stopping).await;
                };
                if let Err(error) =
                    crate::metrics::serve_admin(listener, metrics, Some(oversight), shutdown).await
                {
                    tracing::error!(%error, "admin listener failed");
                }
            })
        });
    let taxii_task = taxii_listener
        .zip(taxii_acceptor)
        .map(|(listener, acceptor)| {
            tracing::info!(address = ?taxii_address, "TAXII 2.1 listener (HTTPS, mutual TLS)");
            let taxii = crate::taxii::Taxii::new(&state, config.members.clone());
            crate::taxii::serve(
                tls_incoming(listener, acceptor),
                taxii,
                state.shutdown.clone(),
            )
        });
    let federation_api = FederationApi {
        member: config.member.clone(),
        federation_name: config.federation.clone(),
        federation: federation.clone(),
    };
    let policy_api = PolicyApi {
        member: config.member.clone(),
        federation: config.federation.clone(),
        manager: policy_manager.clone(),
        store,
    };
    let (shutdown, shutdown_signal) = oneshot::channel::<()>();
    let screening_api = crate::screening::service::ScreeningApi {
        screening,
        member: config.member.clone(),
        federation: config.federation.clone(),
    };
    let services = Services {
        audit: audit_api,
        gate: crate::roster::Gate {
            roster,
            federation: config.federation.clone(),
        },
        indicators: state.clone(),
        circle: crate::circle::api::CircleApi { circles },
        policy: policy_api,
        federation: federation_api,
        screening: screening_api,
    };
    let task = tokio::spawn(serve(services, tls, listener, async {
        let _ = shutdown_signal.await;
    }));
    Ok(RunningGateway {
        address,
        admin_address,
        taxii_address,
        taxii_task,
        metrics,
        state,
        policy_manager,
        federation,
        followers,
        shutdown: Some(shutdown),
        stopping,
        task,
        admin_task,
        decision_writer,
        screening_task,
        roster_task,
        dispatcher_task,
        _watcher: watcher,
        _crl_watcher: crl_watcher,
    })
}

/// The gRPC services of one gateway.
struct Services {
    audit: crate::audit::AuditApi,
    /// In front of every Cordon service: refuses suspended members.
    gate: crate::roster::Gate,
    indicators: Arc<GatewayState>,
    circle: crate::circle::api::CircleApi,
    policy: PolicyApi,
    federation: FederationApi,
    screening: crate::screening::service::ScreeningApi,
}

async fn serve(
    services: Services,
    tls: ServerTls,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let Services {
        audit,
        gate,
        indicators: state,
        circle: circle_api,
        policy: policy_api,
        federation: federation_api,
        screening: screening_api,
    } = services;
    let max_message = state.limits.max_message_bytes;
    let indicators = IndicatorServiceServer::new(IndicatorApi::new(state))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<IndicatorServiceServer<IndicatorApi>>()
        .await;
    // Both versions of reflection: grpcurl speaks v1, Python's grpcio-reflection and many
    // other tools still speak v1alpha.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cordon_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Each version lists both.
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection = reflection_builder()
        .build_v1()
        .context("building the reflection service")?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .context("building the v1alpha reflection service")?;
    let mut builder = Server::builder()
        // Bounds for one connection and for dead peers; per-identity limits
        // on subscriptions are in the service.
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .tcp_nodelay(true);
    let acceptor = match tls {
        ServerTls::Tonic(config) => {
            builder = builder.tls_config(config).context("configuring TLS")?;
            None
        }
        ServerTls::WithCrl(acceptor) => Some(acceptor),
    };
    let router = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(indicators, gate.clone()))
        .add_service(InterceptedService::new(
            PolicyServiceServer::new(policy_api),
            gate.clone(),
        ))
        .add_service(InterceptedService::new(
            ScreeningServiceServer::new(screening_api.clone())
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            gate.clone(),
        ))
        .add_service(InterceptedService::new(
            AlertServiceServer::new(screening_api),
            gate.clone(),
        ))
        .add_service(InterceptedService::new(
            FederationServiceServer::new(federation_api),
            gate.clone(),
        ))
        .add_service(InterceptedService::new(
            cordon_proto::v1::audit_service_server::AuditServiceServer::new(audit),
            gate.clone(),
        ))
        .add_service(InterceptedService::new(
            cordon_proto::v1::circle_service_server::CircleServiceServer::new(circle_api)
                .max_decoding_message_size(max_message * 2)
                .max_encoding_message_size(max_message * 2),
            gate,
        ));
    match acceptor {
        None => {
            router
                .serve_with_incoming_shutdown(incoming(listener), shutdown)
                .await
        }
        Some(acceptor) => {
            router
                .serve_with_incoming_shutdown(tls_incoming(listener, acceptor), shutdown)
                .await
        }
    }
    .context("serving gRPC")
}

/// Accepted connections with Nagle's algorithm off. `Server::tcp_nodelay` applies only to
/// listeners tonic binds itself, not to an incoming stream; without this, small responses
/// and stream messages wait for the peer's delayed ACK (about 40 ms).
pub fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// A database URL for logs: no password.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}
