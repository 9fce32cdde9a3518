//! Checkpoints: the C2SP tlog-checkpoint text (origin, tree size, base64 root hash) signed as
//! a C2SP signed note with the gateway's Ed25519 key. The note's key name is the origin.
//!
//! The text is made and parsed by `tlog_tiles::Checkpoint`, the note signed and verified by
//! `signed_note`; Go's `golang.org/x/mod/sumdb/note` and Sigstore read the same form.

use signed_note::{Note, StandardVerifier, VerifierList};

use crate::Digest;

/// A verified checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub size: u64,
    pub root: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint origin {0:?} is not a valid key name (no spaces or '+')")]
    Origin(String),
    #[error("not a signed note: {0}")]
    Note(String),
    #[error("the note is not signed by {origin}'s key: {reason}")]
    Signature { origin: String, reason: String },
    #[error("the note's text is not a checkpoint")]
    Malformed,
    #[error("the checkpoint is for origin {found:?}, not {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

/// Signs checkpoints for one log: the log's origin, the Ed25519 public key and a function
/// that signs with the matching private key (the gateway's own signing key, wherever it is
/// kept).
pub struct CheckpointSigner {
    origin: String,
    public_key: [u8; 32],
    key_id: u32,
    sign: SignFn,
}

/// Signs a message with the log's Ed25519 private key (64-byte signatures).
type SignFn = Box<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CheckpointSigner")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The key id of the signed-note spec for an Ed25519 key: the first four bytes of
/// SHA-256(name, "\n", 0x01, public key).
fn ed25519_key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut encoded = Vec::with_capacity(33);
    encoded.push(0x01);
    encoded.extend_from_slice(public_key);
    signed_note::key_id(name, &encoded)
}

impl CheckpointSigner {
    /// A signer for the log named `origin` (for example `cordon-dev/GH`) whose Ed25519
    /// public key is `public_key` and whose signatures `sign` makes (64 bytes each).
    pub fn new(
        origin: &str,
        public_key: [u8; 32],
        sign: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> Result<Self, CheckpointError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(CheckpointError::Origin(origin.to_string()));
        }
        Ok(CheckpointSigner {
            origin: origin.to_string(),
            public_key,
            key_id: ed25519_key_id(origin, &public_key),
            sign: Box::new(sign),
        })
    }

    /// A signer with the Ed25519 key whose 32-byte seed is `seed`.
    pub fn from_seed(origin: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        use ed25519_dalek::Signer as _;
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let public_key = key.verifying_key().to_bytes();
        CheckpointSigner::new(origin, public_key, move |message| {
            key.sign(message).to_bytes().to_vec()
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The signed note of the checkpoint for `size` entries with root `root`.
    pub fn sign(&self, size: u64, root: &Digest) -> Result<String, CheckpointError> {
        let text = tlog_tiles::Checkpoint::new(&self.origin, size, tlog_tiles::Hash(*root), "")
            .map_err(|_| CheckpointError::Malformed)?
            .to_bytes();
        let mut note =
            Note::new(&text, &[]).map_err(|error| CheckpointError::Note(error.to_string()))?;
        note.add_sigs(&[self])
            .map_err(|error| CheckpointError::Note(error.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|error| CheckpointError::Note(error.to_string()))
    }
}

impl signed_note::Signer for CheckpointSigner {
    fn name(&self) -> &str {
        &self.origin
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let signature = (self.sign)(message);
        if signature.len() != 64 {
            return Err(signature::Error::new());
        }
        Ok(signature)
    }
}

/// Verifies `note` as a checkpoint of the log `origin` signed with `public_key` (32 bytes,
/// as `cordon init` prints it in hex); returns its size and root.
pub fn verify_checkpoint(
    note: &str,
    origin: &str,
    public_key: &[u8; 32],
) -> Result<Checkpoint, CheckpointError> {
    if !signed_note::is_key_name_valid(origin) {
        return Err(CheckpointError::Origin(origin.to_string()));
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(public_key).map_err(|error| {
        CheckpointError::Signature {
            origin: origin.to_string(),
            reason: error.to_string(),
        }
    })?;
    let verifier_key = signed_note::new_ed25519_verifier_key(origin, &key);
    let verifier =
        StandardVerifier::new(&verifier_key).map_err(|error| CheckpointError::Signature {
            origin: origin.to_string(),
            reason: error.to_string(),
        })?;
    let known = VerifierList::new(vec![Box::new(verifier)]);
    let note = Note::from_bytes(note.as_bytes())
        .map_err(|error| CheckpointError::Note(error.to_string()))?;
    note.verify(&known)
        .map_err(|error| CheckpointError::Signature {
            origin: origin.to_string(),
            reason: error.to_string(),
        })?;
    let checkpoint =
        tlog_tiles::Checkpoint::from_bytes(note.text()).map_err(|_| CheckpointError::Malformed)?;
    if checkpoint.origin() != origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.to_string(),
            found: checkpoint.origin().to_string(),
        });
    }
    Ok(Checkpoint {
        size: checkpoint.size(),
        root: checkpoint.hash().0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "cordon.example/GH";

    fn signer(seed: u8) -> CheckpointSigner {
        CheckpointSigner::from_seed(ORIGIN, &[seed; 32]).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_verifies_with_the_public_key_only() {
        let signer = signer(7);
        let root = [0xab; 32];
        let note = signer.sign(20_852_163, &root).unwrap();
        // The C2SP form: origin, size, base64 root, a blank line, one signature line.
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], ORIGIN);
        assert_eq!(lines[1], "20852163");
        assert_eq!(lines[2], "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=");
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with(&format!("— {ORIGIN} ")), "{note}");
        let checkpoint = verify_checkpoint(&note, ORIGIN, &signer.public_key()).unwrap();
        assert_eq!(
            checkpoint,
            Checkpoint {
                size: 20_852_163,
                root
            }
        );
    }

    #[test]
    fn a_changed_size_root_key_or_origin_is_refused() {
        let signer = signer(7);
        let note = signer.sign(10, &[1; 32]).unwrap();
        let key = signer.public_key();
        let changed_size = note.replacen("\n10\n", "\n11\n", 1);
        assert!(matches!(
            verify_checkpoint(&changed_size, ORIGIN, &key),
            Err(CheckpointError::Signature { .. })
        ));
        let changed_root = note.replacen("AQEB", "AQEC", 1);
        assert_ne!(changed_root, note);
        assert!(verify_checkpoint(&changed_root, ORIGIN, &key).is_err());
        let other = self::signer(8);
        assert!(verify_checkpoint(&note, ORIGIN, &other.public_key()).is_err());
        assert!(verify_checkpoint(&note, "cordon.example/NG", &key).is_err());
        assert!(verify_checkpoint("not a note", ORIGIN, &key).is_err());
        assert!(CheckpointSigner::from_seed("has space", &[1; 32]).is_err());
    }
}
