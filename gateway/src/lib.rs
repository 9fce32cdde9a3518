//! The Cordon gateway: one member's gRPC service over mutual TLS, the release of
//! indicators under the member's policy, identities, configuration and the CLI.
//!
//! Only this crate knows `tonic::Status` and turns certificates into identities.

pub mod ca;
pub mod circle;
pub mod cli;
pub mod client;
pub mod config;
pub mod decision_log;
pub mod demo;
pub mod federation;
pub mod identity;
pub mod metrics;
pub mod peer_tls;
pub mod policy_admin;
pub mod policy_cli;
pub mod redaction;
pub mod release;
pub mod server;
pub mod service;
pub mod signing;
pub mod status;
