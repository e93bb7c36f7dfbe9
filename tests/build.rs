fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["accounts.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .type_attribute(
            ".",
            // JsonSchema: `#[truss::route]` handlers take and return these messages, and the
            // OpenAPI document describes them from their Rust types.
            "#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)] #[serde(default)]",
        )
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/accounts.proto");
    Ok(())
}
