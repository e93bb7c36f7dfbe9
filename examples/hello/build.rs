fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protox compiles the proto in pure Rust: no protoc needed for our own protos.
    let fds = protox::compile(["hello.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/hello.proto");
    Ok(())
}
