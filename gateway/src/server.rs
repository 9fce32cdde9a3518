//! Starting a gateway: storage, policy, the mutual-TLS gRPC listener with the
//! indicator service, health checking and reflection. There is no plaintext listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use cordon_indicator::Limits;
use cordon_policy::Policy;
use cordon_proto::v1::indicator_service_server::IndicatorServiceServer;
use cordon_storage::Store;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};

use crate::config::GatewayConfig;
use crate::release::{DecisionSink, Releaser};
use crate::service::{GatewayState, IndicatorApi};

/// Loads the policy of `config`, refusing to start on a broken one.
pub fn load_policy(config: &GatewayConfig) -> Result<Policy> {
    let mut policy = Policy::load_dir(&config.policy_dir)
        .with_context(|| format!("loading policy from {}", config.policy_dir.display()))?;
    policy.set_time_limit(config.policy_time_limit);
    Ok(policy)
}

/// The server's TLS: its own identity, and client certificates required to
/// chain to the federation CA.
pub fn server_tls(config: &GatewayConfig) -> Result<ServerTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let identity = TlsIdentity::from_pem(read(&config.tls_cert)?, read(&config.tls_key)?);
    let ca = Certificate::from_pem(read(&config.tls_ca)?);
    Ok(ServerTlsConfig::new().identity(identity).client_ca_root(ca))
}

/// A gateway running in this process.
#[derive(Debug)]
pub struct RunningGateway {
    pub address: SocketAddr,
    pub state: Arc<GatewayState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<()>>,
}

impl RunningGateway {
    /// Stops accepting, lets open calls finish, and waits.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.await.context("gateway task panicked")??;
        self.state.store.close().await;
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
    let policy = load_policy(config)?;
    let tls = server_tls(config)?;
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| format!("opening storage {}", redact_url(&config.database_url)))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(member = %config.member, %address, policy_revision = %policy.revision(), "gateway listening (mutual TLS)");
    let releaser = Arc::new(Releaser::new(config.member.clone(), policy, sinks));
    let state = Arc::new(GatewayState {
        member: config.member.clone(),
        federation: config.federation.clone(),
        store,
        releaser,
        limits: Limits::default(),
    });
    let (shutdown, shutdown_signal) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(state.clone(), tls, listener, async {
        let _ = shutdown_signal.await;
    }));
    Ok(RunningGateway {
        address,
        state,
        shutdown: Some(shutdown),
        task,
    })
}

async fn serve(
    state: Arc<GatewayState>,
    tls: ServerTlsConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let max_message = state.limits.max_message_bytes;
    let indicators = IndicatorServiceServer::new(IndicatorApi::new(state))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<IndicatorServiceServer<IndicatorApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cordon_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    Server::builder()
        .tls_config(tls)
        .context("configuring TLS")?
        .add_service(health_service)
        .add_service(reflection)
        .add_service(indicators)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("serving gRPC")
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
