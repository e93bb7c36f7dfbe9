use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protox compiles protos in pure Rust: no protoc needed.
    let fds = protox::compile(["{{name_snake}}.proto"], ["proto"])?;
    // The encoded descriptors, for gRPC server reflection (`pb::FILE_DESCRIPTOR_SET`).
    let descriptors = fds.encode_to_vec();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("{{name_snake}}_descriptor.bin"), &descriptors)?;
    tonic_prost_build::configure().compile_fds(fds)?;
    // The messages also serve HTTP/JSON through `#[http]` routes, in the proto3 JSON mapping
    // with the .proto's field names (truss's JsonMapping::Proto3, described by /openapi.json).
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".{{name_snake}}.v1"])?;
    println!("cargo:rerun-if-changed=proto/{{name_snake}}.proto");
    Ok(())
}
