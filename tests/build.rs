fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["accounts.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("accounts_descriptor.bin"),
        protox::prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .type_attribute(
            ".",
            // JsonSchema: `#[truss::route]` handlers take and return these messages, and the
            // OpenAPI document describes them from their Rust types.
            "#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)] #[serde(default)]",
        )
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/accounts.proto");

    // The proto3 JSON mapping test: pbjson's serde, well-known types from pbjson-types, and
    // the descriptors for the OpenAPI document.
    use protox::prost::Message as _;
    let fds = protox::compile(["mapping.proto"], ["proto"])?;
    let descriptors = fds.encode_to_vec();
    std::fs::write(out.join("mapping_descriptor.bin"), &descriptors)?;
    tonic_prost_build::configure()
        // Not prost-types' well-known types (no serde): pbjson-types' (proto3 JSON forms).
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .extern_path(".google.protobuf", "::pbjson_types")
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".mapping.v1"])?;
    println!("cargo:rerun-if-changed=proto/mapping.proto");
    Ok(())
}
