//! Compiles `tests/proto/cordon/next/indicator.proto`, a later version of the indicator
//! (one field more), for the test that signatures survive a schema change. Only the
//! crate's tests include the generated code.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "tests/proto/cordon/next/indicator.proto";
    println!("cargo:rerun-if-changed={file}");
    println!("cargo:rerun-if-changed=../proto/proto/cordon/v1/indicator.proto");
    let descriptors = protox::compile([file], ["tests/proto", "../proto/proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?).join("next");
    std::fs::create_dir_all(&out_dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&out_dir)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .extern_path(".cordon.v1", "::cordon_proto::v1")
        .compile_fds(descriptors.clone())?;
    pbjson_build::Builder::new()
        .out_dir(&out_dir)
        .register_descriptors(&descriptors.encode_to_vec())?
        .extern_path(".cordon.v1", "::cordon_proto::v1")
        .build(&[".cordon.next"])?;
    Ok(())
}
