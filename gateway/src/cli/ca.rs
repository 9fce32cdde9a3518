//! A development federation CA: creates the CA and issues member and agency
//! certificates with SPIFFE-style URI subject alternative names (rcgen).
//!
//! A production federation would use its own PKI; the files written here have
//! the same shape (`cert.pem`, `key.pem`, `ca.pem`) so the gateway does not care.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::identity::{Identity, is_federation_name};
use crate::signing::write_private;

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const FEDERATION_FILE: &str = "federation";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";
/// The CA's certificate revocation list (`cordon ca revoke`), and the serials it lists (hex,
/// one per line).
pub const CRL_FILE: &str = "crl.pem";
pub const REVOKED_FILE: &str = "revoked";
/// A CRL is signed for this long; revoke again (or re-sign) before it runs out.
const CRL_VALIDITY_DAYS: i64 = 30;
/// Identity directories also carry their federation name, so clients and
/// `cordon init` need no extra flag.
pub const DEFAULT_FEDERATION: &str = "cordon-dev";

/// The files of one identity (`cordon ca issue --out DIR`).
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    pub dir: PathBuf,
}

impl IdentityFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        IdentityFiles { dir: dir.into() }
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }
    pub fn federation(&self) -> Result<String> {
        read_federation(&self.dir)
    }
}

pub fn read_federation(dir: &Path) -> Result<String> {
    let path = dir.join(FEDERATION_FILE);
    let text = fs::read_to_string(&path)
        .with_context(|| format!("reading federation name from {}", path.display()))?;
    let name = text.trim().to_string();
    if !is_federation_name(&name) {
        bail!("{}: {name:?} is not a federation name", path.display());
    }
    Ok(name)
}

/// `cordon ca init`: a new federation CA in `out`.
pub fn init_ca(out: &Path, federation: &str) -> Result<()> {
    if !is_federation_name(federation) {
        bail!("federation name {federation:?} must be lowercase letters, digits, '-' and '.'");
    }
    if out.join(CA_KEY_FILE).exists() {
        bail!(
            "{} already holds a CA key; refusing to overwrite it",
            out.display()
        );
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let key = KeyPair::generate().context("generating the CA key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("Cordon federation CA ({federation})"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Cordon development federation");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    let certificate = params
        .self_signed(&key)
        .context("signing the CA certificate")?;
    fs::write(out.join(CA_CERT_FILE), certificate.pem())?;
    write_private(&out.join(CA_KEY_FILE), &key.serialize_pem())?;
    fs::write(out.join(FEDERATION_FILE), format!("{federation}\n"))?;
    Ok(())
}

/// `cordon ca issue`: a certificate for `name` (`GH` or `GH/customs`) signed by the CA in `ca_dir`.
///
/// The certificate serves both as a TLS server certificate (a gateway listens
/// with it) and a client certificate (gateways follow each other, agencies call
/// their gateway), so it names loopback as well as the SPIFFE URI.
pub fn issue(ca_dir: &Path, name: &str, out: &Path) -> Result<Identity> {
    issue_for(ca_dir, name, out, &[])
}

/// A host name of letters, digits and hyphens in dot-separated labels (a leading `*.` for a
/// wildcard is not accepted: a gateway has names of its own).
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// [`issue`], naming also `hosts` (DNS names or IP addresses, `--san`): the names a gateway
/// is reached by besides loopback, which a client checks against the address it dialled.
pub fn issue_for(ca_dir: &Path, name: &str, out: &Path, hosts: &[String]) -> Result<Identity> {
    let identity = Identity::parse(name)?;
    let federation = read_federation(ca_dir)?;
    let ca_pem = fs::read_to_string(ca_dir.join(CA_CERT_FILE))
        .with_context(|| format!("reading {}", ca_dir.join(CA_CERT_FILE).display()))?;
    let ca_key_pem = fs::read_to_string(ca_dir.join(CA_KEY_FILE))
        .with_context(|| format!("reading {}", ca_dir.join(CA_KEY_FILE).display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("parsing the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("parsing the CA certificate")?;

    let key = KeyPair::generate().context("generating the identity key")?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for host in hosts {
        if host.parse::<std::net::IpAddr>().is_err() && !is_dns_name(host) {
            bail!("--san {host:?}: not a DNS name or an IP address");
        }
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    let mut params = CertificateParams::new(names)
        .context("--san: a name is not a DNS name or an IP address")?;
    params
        .subject_alt_names
        .push(SanType::URI(identity.spiffe_uri(&federation).try_into()?));
    params
        .distinguished_name
        .push(DnType::CommonName, identity.to_string());
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365);
    let certificate = params
        .signed_by(&key, &issuer)
        .context("signing the identity certificate")?;

    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    fs::write(out.join(CERT_FILE), certificate.pem())?;
    write_private(&out.join(KEY_FILE), &key.serialize_pem())?;
    fs::write(out.join(CA_CERT_FILE), ca_pem)?;
    fs::write(out.join(FEDERATION_FILE), format!("{federation}\n"))?;
    Ok(identity)
}

/// `cordon ca revoke`: adds the serial of the certificate at `cert` to the CA's revoked list
/// and signs `crl.pem` again; returns how many certificates it lists.
pub fn revoke(ca_dir: &Path, cert: &Path) -> Result<usize> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let pem = fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let (_, parsed) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|error| anyhow::anyhow!("{}: not a PEM certificate: {error}", cert.display()))?;
    let (_, certificate) = X509Certificate::from_der(&parsed.contents)
        .map_err(|error| anyhow::anyhow!("{}: not a certificate: {error}", cert.display()))?;
    let ca_pem = fs::read_to_string(ca_dir.join(CA_CERT_FILE))
        .with_context(|| format!("reading {}", ca_dir.join(CA_CERT_FILE).display()))?;
    let ca_key_pem = fs::read_to_string(ca_dir.join(CA_KEY_FILE))
        .with_context(|| format!("reading {}", ca_dir.join(CA_KEY_FILE).display()))?;
    let (_, ca_parsed) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .map_err(|error| anyhow::anyhow!("the CA certificate: {error}"))?;
    let (_, ca_certificate) = X509Certificate::from_der(&ca_parsed.contents)
        .map_err(|error| anyhow::anyhow!("the CA certificate: {error}"))?;
    // Issued by this CA: its name, and the key identifier of this CA's key (two CAs may
    // share a name).
    let authority_key =
        certificate
            .extensions()
            .iter()
            .find_map(|extension| match extension.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(identifier) => {
                    identifier.key_identifier.as_ref().map(|id| id.0.to_vec())
                }
                _ => None,
            });
    let ca_key_id = ca_certificate.extensions().iter().find_map(|extension| {
        match extension.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(identifier) => {
                Some(identifier.0.to_vec())
            }
            _ => None,
        }
    });
    let same_key = match (&authority_key, &ca_key_id) {
        (Some(authority), Some(ca)) => authority == ca,
        _ => true,
    };
    if certificate.issuer() != ca_certificate.subject() || !same_key {
        bail!("{} was not issued by this CA", cert.display());
    }
    let serial = hex::encode(certificate.raw_serial());
    let listed_path = ca_dir.join(REVOKED_FILE);
    let mut serials: Vec<String> = fs::read_to_string(&listed_path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if !serials.contains(&serial) {
        serials.push(serial);
    }
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("parsing the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("parsing the CA certificate")?;
    let now = OffsetDateTime::now_utc();
    let revoked_certs = serials
        .iter()
        .map(|serial| {
            Ok(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&hex::decode(serial)?),
                revocation_time: now,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(CRL_VALIDITY_DAYS),
        crl_number: rcgen::SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap_or(0)),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer).context("signing the CRL")?;
    fs::write(
        ca_dir.join(CRL_FILE),
        crl.pem().context("encoding the CRL")?,
    )?;
    fs::write(&listed_path, serials.join("\n") + "\n")?;
    Ok(serials.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificate_carries_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca, "test-fed").unwrap();
        assert!(init_ca(&ca, "test-fed").is_err(), "must not overwrite a CA");
        let out = dir.path().join("customs");
        issue(&ca, "GH/customs", &out).unwrap();
        let pem = fs::read(out.join(CERT_FILE)).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap();
        let identity = Identity::from_verified_certificate(&der, "test-fed").unwrap();
        assert_eq!(identity, Identity::parse("GH/customs").unwrap());
        assert!(Identity::from_verified_certificate(&der, "other-fed").is_err());
        assert!(issue(&ca, "not a name", &dir.path().join("x")).is_err());
    }

    #[test]
    fn extra_names_are_written_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca, "test-fed").unwrap();
        let out = dir.path().join("gh");
        let hosts = ["10.231.0.1".to_string(), "gateway.gh.example".to_string()];
        issue_for(&ca, "GH", &out, &hosts).unwrap();
        let pem = fs::read(out.join(CERT_FILE)).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap();
        let (_, certificate) = x509_parser::parse_x509_certificate(&der).unwrap();
        use x509_parser::extensions::GeneralName;
        let names = certificate
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .clone();
        assert!(
            names.contains(&GeneralName::DNSName("gateway.gh.example")),
            "{names:?}"
        );
        assert!(
            names.contains(&GeneralName::IPAddress(&[10, 231, 0, 1])),
            "{names:?}"
        );
        for bad in ["", "a b", "https://x", "-x.example", "x..example"] {
            let error = issue_for(&ca, "NG", &dir.path().join("ng"), &[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(error.contains("--san"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn revocations_accumulate_and_only_this_cas_certificates_are_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_ca(&ca, "test-fed").unwrap();
        for name in ["GH/customs", "GH/police"] {
            issue(&ca, name, &dir.path().join(name.replace('/', "-"))).unwrap();
        }
        let customs = dir.path().join("GH-customs").join(CERT_FILE);
        assert_eq!(revoke(&ca, &customs).unwrap(), 1);
        assert_eq!(revoke(&ca, &customs).unwrap(), 1, "listed once");
        let police = dir.path().join("GH-police").join(CERT_FILE);
        assert_eq!(revoke(&ca, &police).unwrap(), 2);
        let crl = fs::read_to_string(ca.join(CRL_FILE)).unwrap();
        assert!(crl.starts_with("-----BEGIN X509 CRL-----"), "{crl}");

        let other = dir.path().join("other-ca");
        init_ca(&other, "test-fed").unwrap();
        issue(&other, "NG/customs", &dir.path().join("ng")).unwrap();
        let error = revoke(&ca, &dir.path().join("ng").join(CERT_FILE)).unwrap_err();
        assert!(
            error.to_string().contains("not issued by this CA"),
            "{error}"
        );
        assert!(revoke(&ca, &dir.path().join("missing.pem")).is_err());
    }
}
