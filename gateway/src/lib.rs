//! The Cordon gateway: one member's gRPC service over mutual TLS, the release of indicators
//! under the member's policy, federation with partner gateways, MLS circles, identities,
//! configuration and the CLI.
//!
//! Rooms by capability (see ARCHITECTURE.md): [`feed`] (the IndicatorService), [`release`]
//! (hard floor, policy, redaction, decision log), [`federation`] (following partner
//! gateways), [`circle`] (MLS circles), [`policy`] (reloads and the PolicyService), [`cli`]
//! (commands, demo, development CA), [`metrics`], [`taxii`] (the TAXII 2.1 server); small shared modules beside them
//! ([`clock`], [`identity`], [`config`], [`signing`], [`status`]) and [`server`], which wires
//! them together.
//!
//! Only this crate knows `tonic::Status` ([`status`] maps domain errors to it) and turns
//! certificates into identities ([`identity`]).

pub mod audit;
pub mod circle;
pub mod cli;
pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod federation;
pub(crate) mod feed;
pub(crate) mod file_watch;
pub(crate) mod identity;
pub(crate) mod metrics;
pub mod oversight;
pub(crate) mod policy;
pub mod release;
pub(crate) mod roster;
pub mod screening;
pub mod server;
pub mod signing;
pub(crate) mod status;
pub(crate) mod taxii;

pub use feed::MAX_SUBSCRIPTIONS_PER_IDENTITY;
