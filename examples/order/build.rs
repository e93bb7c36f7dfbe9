use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Our own API, server side, and its encoded descriptors for gRPC server reflection
    // (`pb::FILE_DESCRIPTOR_SET`).
    let fds = protox::compile(["order.proto"], ["proto"])?;
    let descriptors = fds.encode_to_vec();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("order_descriptor.bin"), &descriptors)?;
    tonic_prost_build::configure().compile_fds(fds)?;
    // HTTP/JSON in the proto3 JSON mapping, proto field names (truss's JsonMapping::Proto3).
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".order.v1"])?;
    // The user service's published contract, client side only.
    let fds = protox::compile(["user.proto"], ["../user/proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/order.proto");
    println!("cargo:rerun-if-changed=../user/proto/user.proto");
    Ok(())
}
