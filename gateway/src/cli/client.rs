//! Connecting to a gateway over mutual TLS with an identity directory
//! (`cert.pem`, `key.pem`, `ca.pem`), for the CLI, the demo and tests.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cordon_indicator::Limits;
use cordon_proto::v1::indicator_service_client::IndicatorServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity as TlsIdentity};

use crate::cli::ca::IdentityFiles;

/// A channel to `endpoint` (`https://127.0.0.1:7443`) as the identity in `identity_dir`.
pub async fn channel(endpoint: &str, identity_dir: &Path) -> Result<Channel> {
    let files = IdentityFiles::new(identity_dir);
    let read = |path: std::path::PathBuf| {
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(files.ca())?))
        .identity(TlsIdentity::from_pem(
            read(files.cert())?,
            read(files.key())?,
        ));
    Endpoint::from_shared(endpoint.to_string())
        .with_context(|| {
            format!("endpoint {endpoint:?} is not a URL such as https://127.0.0.1:7443")
        })?
        .tls_config(tls)
        .context("configuring TLS")?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

/// An indicator service client sized for the gateway's message limit.
pub async fn indicator_client(
    endpoint: &str,
    identity_dir: &Path,
) -> Result<IndicatorServiceClient<Channel>> {
    let limit = Limits::default().max_message_bytes;
    Ok(
        IndicatorServiceClient::new(channel(endpoint, identity_dir).await?)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    )
}
