//! The mutual-TLS channel a gateway opens to a partner gateway it follows.
//!
//! Chain and host name are checked by rustls's WebPKI verifier against the
//! federation CA, as for any client. On top of that the peer's certificate must
//! carry the SPIFFE identity of the member the config names
//! (`spiffe://<federation>/member/<peer>`): another member's gateway answering
//! at that address, with a perfectly valid certificate of its own, is refused
//! during the handshake, before any request is sent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::PeerConfig;
use crate::identity::Identity;

/// The files of this gateway's own TLS identity and the federation CA.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
    /// `[tls] crl`: peers' certificates the CA revoked are refused too; read on each connect.
    pub crl: Option<std::path::PathBuf>,
}

/// The CRLs in the PEM file at `path` (at least one).
pub fn read_crls(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>> {
    use rustls::pki_types::CertificateRevocationListDer;
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .with_context(|| format!("tls.crl: reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.crl: parsing {}", path.display()))?;
    if crls.is_empty() {
        anyhow::bail!("tls.crl: {} holds no CRL", path.display());
    }
    Ok(crls)
}

/// Verifies as WebPKI does, then requires the certificate to name `expected`.
struct PeerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    federation: String,
    expected: Identity,
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PeerVerifier")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let identity = Identity::from_verified_certificate(end_entity, &self.federation)
            .map_err(|error| rustls::Error::General(format!("peer certificate: {error}")))?;
        if identity != self.expected {
            return Err(rustls::Error::General(format!(
                "peer certificate names {identity}, not the expected gateway {}",
                self.expected
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A rustls client config that presents this gateway's certificate and accepts
/// only `peer`'s gateway certificate.
pub fn client_config(
    files: &TlsFiles,
    federation: &str,
    peer: &str,
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(&files.ca)
        .with_context(|| format!("reading {}", files.ca.display()))?
    {
        roots
            .add(certificate.with_context(|| format!("parsing {}", files.ca.display()))?)
            .with_context(|| format!("adding {} as a root", files.ca.display()))?;
    }
    let mut builder =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if let Some(crl) = &files.crl {
        builder = builder.with_crls(read_crls(crl)?);
    }
    let webpki = builder
        .build()
        .context("building the certificate verifier")?;
    let verifier = PeerVerifier {
        webpki,
        federation: federation.to_string(),
        expected: Identity::Member {
            member: peer.to_string(),
        },
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading {}", files.key.display()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)
        .context("this gateway's TLS identity")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Connects to `peer` over mutual TLS, as this gateway, refusing any other identity.
pub async fn connect(peer: &PeerConfig, federation: &str, files: &TlsFiles) -> Result<Channel> {
    let config = Arc::new(client_config(files, federation, &peer.id)?);
    let server_name = ServerName::try_from(peer.host.clone())
        .with_context(|| format!("{}: not a host name or address", peer.host))?;
    let authority = peer.authority.clone();
    let connector = tower::service_fn(move |_: Uri| {
        let config = config.clone();
        let server_name = server_name.clone();
        let authority = authority.clone();
        async move {
            let tcp = TcpStream::connect(authority.as_str()).await?;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(config).connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    // The scheme tells tonic not to add TLS of its own: the connector above already did.
    Endpoint::from_shared(format!("http://{}", peer.authority))
        .with_context(|| format!("endpoint {}", peer.endpoint))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
        .with_context(|| format!("connecting to peer {} at {}", peer.id, peer.endpoint))
}
