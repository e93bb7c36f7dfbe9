use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["user.proto"], ["proto"])?;
    // The encoded descriptors, for gRPC server reflection (`pb::FILE_DESCRIPTOR_SET`) and
    // the OpenAPI document.
    let descriptors = fds.encode_to_vec();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("user_descriptor.bin"), &descriptors)?;
    tonic_prost_build::configure().compile_fds(fds)?;
    // The same messages serve HTTP/JSON through `#[http]` routes, in the proto3 JSON
    // mapping: proto field names and every field on output (truss's JsonMapping::Proto3).
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".user.v1"])?;
    println!("cargo:rerun-if-changed=proto/user.proto");
    Ok(())
}
