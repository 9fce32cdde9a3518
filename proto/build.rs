//! Generates the Rust types, gRPC stubs, proto3 JSON (serde) impls and the
//! descriptor set for reflection from `proto/cordon/v1/*.proto`, with the
//! pure-Rust protox compiler: a fresh machine needs no `protoc`.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/cordon/v1/indicator.proto",
        "proto/cordon/v1/gateway.proto",
        "proto/cordon/v1/policy.proto",
        "proto/cordon/v1/federation.proto",
        "proto/cordon/v1/circle.proto",
        "proto/cordon/v1/screening.proto",
        "proto/cordon/v1/audit.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_bytes = descriptors.encode_to_vec();
    std::fs::write(out_dir.join("cordon_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .build(&[".cordon"])?;
    Ok(())
}
