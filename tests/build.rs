fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["accounts.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .type_attribute(
            ".",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/accounts.proto");
    Ok(())
}
