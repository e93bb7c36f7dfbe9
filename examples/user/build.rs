fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["user.proto"], ["proto"])?;
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
