fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protox compiles protos in pure Rust: no protoc needed.
    let fds = protox::compile(["{{name_snake}}.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // The messages also serve HTTP/JSON through `#[http]` routes.
        .type_attribute(
            ".",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/{{name_snake}}.proto");
    Ok(())
}
