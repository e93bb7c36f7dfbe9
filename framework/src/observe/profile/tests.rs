//! The router on its own (no listener): query checks, one profile at a time, and a real
//! profile of a busy thread that decodes and names the thread's function.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use prost::Message as _;
use tower::ServiceExt as _;

use super::proto::Profile;
use super::router;
use super::session::Slot;

/// The profiler is process-global: these tests take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = router().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn bad_queries_are_400_naming_the_parameter() {
    for (query, says) in [
        (
            "seconds=0",
            "`seconds` must be a whole number from 1 to 300",
        ),
        ("seconds=1000", "`seconds`"),
        (
            "frequency=0",
            "`frequency` must be a whole number from 1 to 1000",
        ),
        ("secs=5", "unknown query parameter \"secs\""),
    ] {
        for endpoint in ["profile", "flamegraph"] {
            let (status, headers, body) = get(&format!("/debug/pprof/{endpoint}?{query}")).await;
            let body = String::from_utf8(body).unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert!(body.contains(says), "{query}: {body}");
            assert_eq!(headers["x-go-pprof"], "1");
        }
    }
}

#[tokio::test]
async fn a_second_profile_while_one_runs_is_409() {
    let _turn = TURN.lock().await;
    let slot = Slot::take().expect("no profile runs");
    let (status, _, body) = get("/debug/pprof/profile?seconds=1").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("already being taken")
    );
    drop(slot);
    assert!(Slot::take().is_some(), "the slot is free again");
}

/// Xorshift rounds: plain arithmetic that stays in this function even unoptimized (no calls
/// but the rare flag check), so the samples' leaf frame is this function.
#[inline(never)]
fn spin_for_profile_unit_test(stop: &AtomicBool) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while !stop.load(Ordering::Relaxed) {
        let mut i = 0u32;
        while i < 1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            i += 1;
        }
    }
    x
}

/// Burns CPU on a plain thread until dropped.
struct Busy {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Busy {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || spin_for_profile_unit_test(&flag));
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_decodes_and_names_the_busy_function() {
    let _turn = TURN.lock().await;
    let _busy = Busy::start();

    let (status, headers, body) = get("/debug/pprof/profile?seconds=1&frequency=250").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/octet-stream");
    let profile = Profile::decode(body.as_slice()).expect("a perftools.profiles.Profile");
    assert_eq!(profile.string_table[0], "");
    let types: Vec<_> = profile
        .sample_type
        .iter()
        .map(|t| (profile.string(t.r#type), profile.string(t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    assert_eq!(profile.period, 1_000_000_000 / 250);
    assert!(
        profile.duration_nanos >= 900_000_000,
        "{}",
        profile.duration_nanos
    );
    assert!(!profile.sample.is_empty());
    for sample in &profile.sample {
        assert_eq!(sample.value[1], sample.value[0] * profile.period);
        for id in &sample.location_id {
            assert!(profile.location.iter().any(|l| l.id == *id));
        }
    }
    let busy = profile
        .function
        .iter()
        .find(|f| {
            profile
                .string(f.name)
                .contains("spin_for_profile_unit_test")
        })
        .expect("the busy function is named");
    // The busy thread is sampled most: its function is the leaf of the heaviest stack.
    let heaviest = profile.sample.iter().max_by_key(|s| s.value[0]).unwrap();
    let leaf = profile
        .location
        .iter()
        .find(|l| l.id == heaviest.location_id[0])
        .unwrap();
    assert!(
        leaf.line.iter().any(|line| line.function_id == busy.id),
        "the heaviest stack's leaf is the busy function"
    );

    let (status, headers, body) = get("/debug/pprof/flamegraph?seconds=1&frequency=250").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/svg+xml");
    let svg = String::from_utf8(body).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    assert!(svg.contains("spin_for_profile_unit_test"));
}

#[test]
fn an_idle_flamegraph_is_still_an_svg() {
    let report = pprof::Report {
        data: std::collections::HashMap::new(),
        timing: Default::default(),
    };
    let svg = String::from_utf8(super::flame::svg(&report).unwrap()).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("No CPU samples"),
        "{svg}"
    );
    let profile = super::encode::to_profile(&report);
    assert!(profile.sample.is_empty());
    assert_eq!(profile.string_table[0], "");
}

#[tokio::test]
async fn heap_without_jemalloc_is_a_501_saying_what_is_missing() {
    // This test binary does not make jemalloc its allocator (and may lack the feature).
    let (status, headers, body) = get("/debug/pprof/heap").await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(headers["x-go-pprof"], "1");
    let says = if cfg!(feature = "heap-profiling") {
        "global_allocator"
    } else {
        "`heap-profiling` feature"
    };
    assert!(body.contains(says), "{body}");
}
