//! Compiles `oqs/fleet/v1/fleet.proto` with protox (pure Rust), so no system `protoc` is needed, and
//! writes the file descriptor set the collector serves through gRPC reflection.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "oqs/fleet/v1/fleet.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("fleet_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The rpc is named `Connect`, which would clash with the generated `connect(dst)`
        // constructor; clients build a Channel and call `FleetIngestClient::new` instead.
        .build_transport(false)
        .codec_path("crate::codec::LeanCodec")
        .compile_fds(fds)?;
    Ok(())
}
