use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["user.proto"], ["proto"])?;
    // The encoded descriptors, for gRPC server reflection (`pb::FILE_DESCRIPTOR_SET`).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("user_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // The same messages serve HTTP/JSON through `#[http]` routes.
        .type_attribute(
            ".",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/user.proto");
    Ok(())
}
