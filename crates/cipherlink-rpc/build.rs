//! Compiles `proto/score.proto` without a system `protoc`: protox parses the
//! file into a descriptor set in pure Rust, and tonic-prost-build turns that
//! into the message types and the client/server stubs.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/score.proto");
    let descriptors = protox::compile(["score.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
