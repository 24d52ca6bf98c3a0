//! Compiles `proto/chain.proto` with protox (pure Rust, no `protoc` needed) and generates
//! the tonic client, and the server with the `server` feature.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/chain.proto");
    let fds = protox::compile(["proto/chain.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(std::env::var_os("CARGO_FEATURE_SERVER").is_some())
        .compile_fds(fds)?;
    Ok(())
}
