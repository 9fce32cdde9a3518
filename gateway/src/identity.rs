//! Federation identities: the names of members and agencies, their SPIFFE-style
//! URIs, and the one place where a verified peer certificate becomes an identity: [`caller`]
//! for a gRPC request, [`Identity::from_verified_certificate`] for a partner gateway's server
//! certificate (checked by the follower's TLS verifier).

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Who is on the other end of a connection, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A member's gateway, for example `GH`.
    Member { member: String },
    /// An agency of a member, for example `GH/customs`.
    Agency { member: String, agency: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("identity name {0:?} is not a member (`GH`) or an agency (`GH/customs`)")]
    BadName(String),
    #[error("certificate has no spiffe:// URI subject alternative name")]
    NoSpiffeUri,
    #[error("certificate names {found:?}, outside federation {expected:?}")]
    WrongFederation { found: String, expected: String },
    #[error("certificate URI {0:?} is not a cordon member or agency identity")]
    BadUri(String),
    #[error("certificate could not be parsed: {0}")]
    BadCertificate(String),
    #[error("certificate has several spiffe:// URIs")]
    SeveralUris,
}

/// A member id: 2 to 16 characters of `A-Z`, `0-9` and `-`, starting with a letter.
pub fn is_member_id(text: &str) -> bool {
    (2..=16).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_uppercase())
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
}

/// An agency name: 1 to 32 characters of `a-z`, `0-9`, `-` and `_`.
pub fn is_agency_name(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A federation (SPIFFE trust domain) name: lowercase letters, digits, `-` and `.`.
pub fn is_federation_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

impl Identity {
    /// Parses `GH` or `GH/customs`.
    pub fn parse(name: &str) -> Result<Identity, IdentityError> {
        let bad = || IdentityError::BadName(name.to_string());
        match name.split_once('/') {
            None if is_member_id(name) => Ok(Identity::Member {
                member: name.to_string(),
            }),
            Some((member, agency)) if is_member_id(member) && is_agency_name(agency) => {
                Ok(Identity::Agency {
                    member: member.to_string(),
                    agency: agency.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }

    /// The member this identity belongs to.
    pub fn member(&self) -> &str {
        match self {
            Identity::Member { member } | Identity::Agency { member, .. } => member,
        }
    }

    /// `"member"` or `"agency"`: the recipient kind seen by the policy.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Member { .. } => "member",
            Identity::Agency { .. } => "agency",
        }
    }

    /// Whether this is an agency of `member`.
    pub fn is_agency_of(&self, member: &str) -> bool {
        matches!(self, Identity::Agency { member: own, .. } if own == member)
    }

    /// `spiffe://<federation>/member/GH[/agency/customs]`.
    pub fn spiffe_uri(&self, federation: &str) -> String {
        match self {
            Identity::Member { member } => format!("spiffe://{federation}/member/{member}"),
            Identity::Agency { member, agency } => {
                format!("spiffe://{federation}/member/{member}/agency/{agency}")
            }
        }
    }

    /// Parses a SPIFFE URI of `federation`.
    pub fn from_spiffe_uri(uri: &str, federation: &str) -> Result<Identity, IdentityError> {
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| IdentityError::BadUri(uri.to_string()))?;
        let (domain, path) = rest
            .split_once('/')
            .ok_or_else(|| IdentityError::BadUri(uri.to_string()))?;
        if domain != federation {
            return Err(IdentityError::WrongFederation {
                found: domain.to_string(),
                expected: federation.to_string(),
            });
        }
        let parts: Vec<&str> = path.split('/').collect();
        let name = match parts.as_slice() {
            ["member", member] => member.to_string(),
            ["member", member, "agency", agency] => format!("{member}/{agency}"),
            _ => return Err(IdentityError::BadUri(uri.to_string())),
        };
        Identity::parse(&name).map_err(|_| IdentityError::BadUri(uri.to_string()))
    }

    /// The identity in a DER certificate that rustls has already verified
    /// against the federation CA. This is the only way the gateway learns
    /// who a peer is: request fields never name the caller.
    pub fn from_verified_certificate(
        der: &[u8],
        federation: &str,
    ) -> Result<Identity, IdentityError> {
        let (_, certificate) = X509Certificate::from_der(der)
            .map_err(|error| IdentityError::BadCertificate(error.to_string()))?;
        let mut uris = Vec::new();
        if let Ok(Some(san)) = certificate.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name
                    && uri.starts_with("spiffe://")
                {
                    uris.push(*uri);
                }
            }
        }
        match uris.as_slice() {
            [] => Err(IdentityError::NoSpiffeUri),
            [uri] => Identity::from_spiffe_uri(uri, federation),
            _ => Err(IdentityError::SeveralUris),
        }
    }
}

/// The name of `member`'s audit log (the checkpoint's first line and its signature's key
/// name): `<federation>/<member>`.
pub fn audit_log_origin(federation: &str, member: &str) -> String {
    format!("{federation}/{member}")
}

/// The caller of a gRPC request, from the client certificate rustls verified against the
/// federation CA. No request field can name it.
pub fn caller<T>(request: &tonic::Request<T>, federation: &str) -> Result<Identity, tonic::Status> {
    let required = || tonic::Status::unauthenticated("a client certificate is required");
    let certificates = request.peer_certs().ok_or_else(required)?;
    let leaf = certificates.first().ok_or_else(required)?;
    Identity::from_verified_certificate(leaf, federation).map_err(|error| {
        tonic::Status::permission_denied(format!("client certificate refused: {error}"))
    })
}

impl fmt::Display for Identity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Member { member } => write!(formatter, "{member}"),
            Identity::Agency { member, agency } => write!(formatter, "{member}/{agency}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_name(name: &str, expected: Option<&str>) {
        let parsed = Identity::parse(name)
            .ok()
            .map(|identity| identity.spiffe_uri("fed"));
        assert_eq!(parsed.as_deref(), expected, "name {name:?}");
    }

    #[test]
    fn names() {
        check_name("GH", Some("spiffe://fed/member/GH"));
        check_name("GH/customs", Some("spiffe://fed/member/GH/agency/customs"));
        check_name("ECOWAS", Some("spiffe://fed/member/ECOWAS"));
        check_name("gh", None);
        check_name("G", None);
        check_name("GH/Customs", None);
        check_name("GH/customs/x", None);
        check_name("GH/", None);
        check_name("", None);
    }

    #[test]
    fn uris_round_trip_and_refuse_other_federations() {
        for name in ["GH", "NG/police"] {
            let identity = Identity::parse(name).unwrap();
            let uri = identity.spiffe_uri("cordon-dev");
            assert_eq!(
                Identity::from_spiffe_uri(&uri, "cordon-dev").unwrap(),
                identity
            );
            assert!(matches!(
                Identity::from_spiffe_uri(&uri, "other"),
                Err(IdentityError::WrongFederation { .. })
            ));
        }
        assert!(Identity::from_spiffe_uri("spiffe://cordon-dev/admin", "cordon-dev").is_err());
        assert!(
            Identity::from_spiffe_uri("spiffe://cordon-dev/member/GH/agency/Bad", "cordon-dev")
                .is_err()
        );
    }
}
