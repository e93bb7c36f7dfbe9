fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["bench.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/bench.proto");
    Ok(())
}
