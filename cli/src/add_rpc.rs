//! `cargo truss add rpc`: skeletons for the rpcs of a `.proto` that the `#[truss::grpc]` impl
//! does not have yet. Existing code is never changed: new methods are inserted before the
//! impl block's closing brace, and the file is replaced atomically.

use std::path::Path;

use prost_types::{FileDescriptorProto, MethodDescriptorProto, ServiceDescriptorProto};

use crate::names;

/// What `add rpc` did.
pub struct Added {
    /// The methods written, as `Service/Rpc`.
    pub added: Vec<String>,
    /// Rpcs left out, with why.
    pub skipped: Vec<String>,
}

/// Adds the missing rpc methods of `proto` to the `#[truss::grpc]` impl in `source`.
pub fn add_rpc(proto: &Path, source: &Path) -> Result<Added, String> {
    let file = compile(proto)?;
    let code = std::fs::read_to_string(source)
        .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let ast = syn::parse_file(&code)
        .map_err(|e| format!("{} does not parse as Rust: {e}", source.display()))?;
    let impls: Vec<&syn::ItemImpl> = ast
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Impl(i) if grpc_attr(i).is_some() => Some(i),
            _ => None,
        })
        .collect();
    if impls.is_empty() {
        return Err(format!(
            "no `#[truss::grpc(...)] impl` block in {}",
            source.display()
        ));
    }

    let package = file.package();
    let mut insertions: Vec<(usize, String)> = Vec::new();
    let mut result = Added {
        added: Vec::new(),
        skipped: Vec::new(),
    };
    for service in &file.service {
        let Some(block) = find_impl(&impls, service) else {
            result.skipped.push(format!(
                "{}: no #[truss::grpc(..::{})] impl in {}",
                service.name(),
                service.name(),
                source.display()
            ));
            continue;
        };
        let existing: Vec<String> = block
            .items
            .iter()
            .filter_map(|i| match i {
                syn::ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
                _ => None,
            })
            .collect();
        let mut text = String::new();
        for rpc in &service.method {
            let name = names::method(rpc.name());
            if existing.contains(&name) {
                continue;
            }
            text.push_str(&skeleton(rpc, &name, package));
            result
                .added
                .push(format!("{}/{}", service.name(), rpc.name()));
        }
        if !text.is_empty() {
            let close = block.brace_token.span.close().start();
            insertions.push((offset(&code, close.line, close.column)?, text));
        }
    }
    if insertions.is_empty() {
        return Ok(result);
    }
    insertions.sort_by_key(|(at, _)| *at);
    let mut out = String::with_capacity(code.len() + 512);
    let mut from = 0;
    for (at, text) in insertions {
        out.push_str(&code[from..at]);
        out.push_str(&text);
        from = at;
    }
    out.push_str(&code[from..]);
    let staging = source.with_extension("rs.truss-new");
    std::fs::write(&staging, out).map_err(|e| format!("writing {}: {e}", staging.display()))?;
    std::fs::rename(&staging, source).map_err(|e| {
        let _ = std::fs::remove_file(&staging);
        format!("replacing {}: {e}", source.display())
    })?;
    Ok(result)
}

fn compile(proto: &Path) -> Result<FileDescriptorProto, String> {
    let dir = proto
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = proto
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} is not a file name", proto.display()))?;
    if !proto.is_file() {
        return Err(format!("{} does not exist", proto.display()));
    }
    let set = protox::compile([name], [dir]).map_err(|e| format!("{}: {e}", proto.display()))?;
    set.file
        .into_iter()
        .find(|f| f.name() == name)
        .ok_or_else(|| format!("{} compiled to nothing", proto.display()))
}

fn grpc_attr(block: &syn::ItemImpl) -> Option<&syn::Attribute> {
    block
        .attrs
        .iter()
        .find(|a| a.path().segments.last().is_some_and(|s| s.ident == "grpc"))
}

/// The impl whose attribute names `service` (or the only one).
fn find_impl<'a>(
    impls: &[&'a syn::ItemImpl],
    service: &ServiceDescriptorProto,
) -> Option<&'a syn::ItemImpl> {
    let named = impls.iter().copied().find(|i| {
        grpc_attr(i)
            .and_then(|a| a.parse_args::<syn::Path>().ok())
            .and_then(|p| p.segments.last().map(|s| s.ident == service.name()))
            .unwrap_or(false)
    });
    named.or_else(|| (impls.len() == 1).then(|| impls[0]))
}

/// The Rust type of a proto message type as `pb::...`.
fn rust_type(proto_type: &str, package: &str) -> String {
    match proto_type {
        ".google.protobuf.Empty" => return "()".to_owned(),
        t if t.starts_with(".google.protobuf.") => {
            return format!("::prost_types::{}", &t[".google.protobuf.".len()..]);
        }
        _ => {}
    }
    let local = proto_type
        .strip_prefix('.')
        .and_then(|t| t.strip_prefix(package))
        .and_then(|t| t.strip_prefix('.'))
        .unwrap_or(proto_type.trim_start_matches('.'));
    // Nested messages live in a module named after their parent.
    let parts: Vec<&str> = local.split('.').collect();
    let (last, parents) = parts.split_last().unwrap_or((&local, &[]));
    let mut path = String::from("pb::");
    for p in parents {
        path.push_str(&names::method(p));
        path.push_str("::");
    }
    path.push_str(last);
    path
}

fn skeleton(rpc: &MethodDescriptorProto, name: &str, package: &str) -> String {
    let input = rust_type(rpc.input_type(), package);
    let output = rust_type(rpc.output_type(), package);
    if rpc.client_streaming() || rpc.server_streaming() {
        // Streaming rpcs are written in tonic's own form, marked #[raw].
        let input = if rpc.client_streaming() {
            format!("tonic::Streaming<{input}>")
        } else {
            input
        };
        let (stream_type, output) = if rpc.server_streaming() {
            let ty = format!("{}Stream", rpc.name());
            (
                format!(
                    "
    type {ty} = std::pin::Pin<
        Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<{output}, tonic::Status>> + Send>,
    >;
"
                ),
                format!("Self::{ty}"),
            )
        } else {
            (String::new(), output)
        };
        return format!(
            "{stream_type}
    #[raw]
    async fn {name}(
        &self,
        req: tonic::Request<{input}>,
    ) -> Result<tonic::Response<{output}>, tonic::Status> {{
        let _ = req;
        Err(tonic::Status::unimplemented(\"{rpc_name} is not implemented yet\"))
    }}
",
            rpc_name = rpc.name()
        );
    }
    format!(
        "
    async fn {name}(&self, req: {input}) -> Result<{output}, truss::Error> {{
        let _ = req;
        Err(truss::Error::new(501, \"NOT_IMPLEMENTED\", \"{rpc_name} is not implemented yet\"))
    }}
",
        rpc_name = rpc.name()
    )
}

/// Byte offset of a 1-based line and 0-based char column.
fn offset(code: &str, line: usize, column: usize) -> Result<usize, String> {
    let mut at = 0;
    for (i, text) in code.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col = text
                .char_indices()
                .nth(column)
                .map_or(text.len(), |(b, _)| b);
            return Ok(at + col);
        }
        at += text.len();
    }
    Err("cannot locate the end of the impl block".to_owned())
}
