use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protox compiles the proto in pure Rust: no protoc needed for our own protos.
    let fds = protox::compile(["hello.proto"], ["proto"])?;
    // The encoded descriptors, for gRPC server reflection (`pb::FILE_DESCRIPTOR_SET`).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("hello_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/hello.proto");
    Ok(())
}
