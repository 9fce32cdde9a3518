//! The `cordon.v1` protocol: message types, gRPC client and server stubs, and
//! their proto3 JSON mapping (serde), generated at build time.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/cordon.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/cordon.v1.serde.rs"));
}

/// Encoded `FileDescriptorSet` of the protocol, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cordon_descriptor.bin"));

pub use pbjson_types::Timestamp;
