//! The verifiable record: what a gateway did, in an append-only Merkle log that anyone holding
//! its public key can check was never rewritten.
//!
//! - [`log`]: the tree. RFC 9162 hashing (SHA-256, `0x00` leaf and `0x01` node prefixes) over
//!   the stored hashes of every complete subtree (the layout of Go's `tlog` and C2SP
//!   tlog-tiles, through the `tlog_tiles` crate), so that the root, an inclusion proof or a
//!   consistency proof reads at most a few dozen stored hashes whatever the size of the log.
//! - [`verify`]: the checks an auditor runs, written from RFC 9162's algorithms (§2.1.3.2 and
//!   §2.1.4.2), independently of the code that makes the proofs; tests check both against a
//!   second implementation from crates.io (`ct-merkle`).
//! - [`checkpoint`]: signed tree heads in the C2SP checkpoint form (origin, size, base64 root)
//!   as C2SP signed notes with an Ed25519 signature (the `signed_note` crate).
//! - [`entry`]: what goes in, and the one canonical byte form each entry is hashed from.
//!
//! No gRPC and no SQL here: the gateway stores the hashes and serves the proofs.

pub mod checkpoint;
pub mod entry;
pub mod log;
pub mod verify;

/// A SHA-256 digest: a leaf hash, a node hash or a root.
pub type Digest = [u8; 32];

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointSigner, verify_checkpoint};
pub use entry::Entry;
pub use log::{HashStore, LogError, MemoryLog};
pub use verify::{ProofError, leaf_hash, proof_hashes, verify_consistency, verify_inclusion};
