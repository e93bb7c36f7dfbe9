//! Heap profiles from jemalloc: `GET /debug/pprof/heap`, the live sampled allocations in
//! pprof's protobuf format (feature `heap-profiling`).

use axum::http::StatusCode;
use axum::response::Response;

use super::handler::error;

/// jemalloc, built with heap profiling, to install as the binary's global allocator. See
/// [the module docs](super#heap-profiles) for the two statics a binary declares.
#[cfg(feature = "heap-profiling")]
pub use tikv_jemallocator::Jemalloc;

/// `GET /debug/pprof/heap`: jemalloc's sampled live allocations, symbolized in the process.
#[cfg(feature = "heap-profiling")]
pub(super) async fn heap() -> Response {
    let Some(ctl) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "jemalloc heap profiling is off in this process: make \
             truss::observe::profile::Jemalloc the #[global_allocator] and start it with \
             `prof:true` (a `_rjem_malloc_conf` static or the _RJEM_MALLOC_CONF environment \
             variable); see truss::observe::profile",
        );
    };
    let ctl = ctl.clone().lock_owned().await;
    if !ctl.activated() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "jemalloc heap profiling is enabled but not active (`prof_active:false`)",
        );
    }
    let dump = tokio::task::spawn_blocking(move || {
        let mut ctl = ctl;
        let dump = ctl
            .dump_pprof()
            .map_err(|e| format!("dumping the heap profile: {e:#}"))?;
        mark_symbolized(&dump)
    })
    .await
    .map_err(|e| format!("the heap profile dump did not finish: {e}"))
    .and_then(|dump| dump);
    match dump {
        Ok(body) => {
            use axum::http::header;
            use axum::response::IntoResponse as _;
            let headers = [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"heap.pb\"",
                ),
            ];
            (headers, body).into_response()
        }
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

/// jemalloc_pprof's gzipped profile, uncompressed, with every mapping marked as symbolized.
///
/// Its locations are already symbolized in the process, but only some of the mappings of a
/// binary say so; `go tool pprof` merges a binary's mappings into the first, finds it
/// unsymbolized and symbolizes again from the file, which for Rust code built with
/// `debug = "line-tables-only"` loses function names (binutils' `addr2line` and older
/// `llvm-symbolizer`). Marking the mappings keeps the names resolved here.
#[cfg(feature = "heap-profiling")]
fn mark_symbolized(gzipped: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;

    use prost::Message as _;

    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_end(&mut raw)
        .map_err(|e| format!("unzipping jemalloc's heap profile: {e}"))?;
    let mut profile = super::proto::Profile::decode(raw.as_slice())
        .map_err(|e| format!("decoding jemalloc's heap profile: {e}"))?;
    for mapping in &mut profile.mapping {
        mapping.has_functions = true;
        mapping.has_filenames = true;
        mapping.has_line_numbers = true;
        mapping.has_inline_frames = true;
    }
    Ok(profile.encode_to_vec())
}

/// `GET /debug/pprof/heap` without the `heap-profiling` feature: says what is missing rather
/// than a bare 404.
#[cfg(not(feature = "heap-profiling"))]
pub(super) async fn heap() -> Response {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "heap profiles need truss's `heap-profiling` feature and jemalloc as the global \
         allocator; see truss::observe::profile",
    )
}
