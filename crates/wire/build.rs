//! Compiles `proto/wire.proto` with protox (pure Rust, no protoc needed) and tonic-prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/wire.proto");
    let fds = protox::compile(["wire.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".bittensor.wire.v1.Tensor.data")
        .compile_fds(fds)?;
    Ok(())
}
