//! Heap profiles from jemalloc: `GET /debug/pprof/heap`, the live sampled allocations in
//! pprof's gzipped protobuf format (feature `heap-profiling`).

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
        ctl.dump_pprof()
            .map_err(|e| format!("dumping the heap profile: {e:#}"))
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
                    "attachment; filename=\"heap.pb.gz\"",
                ),
            ];
            (headers, body).into_response()
        }
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
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
