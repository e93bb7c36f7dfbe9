//! Property tests for every parser of outside input. Each never panics on arbitrary input,
//! and round-trips where a printer exists:
//!
//! * `grpc-timeout` (`resilience::deadline::grpc_timeout`): `parse` matches a model of the
//!   grammar (1–8 digits, unit `H M S m u n`) on any bytes; `parse(format(d))` is never
//!   longer than `d`, less than one unit shorter (bar the 99999999H clamp), in the finest unit.
//! * `traceparent` (`TraceContext::from_traceparent`, `child_traceparent`, id `Display`):
//!   valid headers give back their ids and flags; zero ids, version `ff`, wrong lengths,
//!   uppercase hex and extra fields on version `00` are refused.
//! * Config durations (`config::duration::{parse, format}`, `HumanDuration` serde).
//! * Path and query decoding of `#[truss::route]` handlers (`__private::{path_rejection,
//!   query_rejection}`) and of the HTTP/JSON bridge of `#[truss::grpc]` (`__private::bridge`):
//!   only 200 or 400, and u64/i32/String/bool values come back as sent.
//! * The error body: `Error::from_http` on any bytes; `into_response` then `from_http`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{Method, StatusCode};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower::ServiceExt;
use truss::config::duration::{self, HumanDuration};
use truss::observe::trace::{SpanId, TraceContext, TraceId};
use truss::resilience::deadline::grpc_timeout;

/// 256 cases, and no regression files next to the tests (a failure prints its input).
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    }
}

/// Durations across every scale, from a few nanoseconds to `Duration::MAX`.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..200_000_000).prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_nanos),
        (0u64..1 << 50).prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        Just(Duration::ZERO),
        Just(Duration::MAX),
    ]
}

// ---------------------------------------------------------------- grpc-timeout

/// The `grpc-timeout` units, finest first, in nanoseconds.
const GRPC_UNITS: [(u8, u128); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60_000_000_000),
    (b'H', 3_600_000_000_000),
];
const GRPC_MAX: u128 = 99_999_999;

/// What the gRPC spec reads from a value, in nanoseconds: `None` when malformed.
fn grpc_model(value: &[u8]) -> Option<u128> {
    let (&unit, digits) = value.split_last()?;
    if !(1..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u128 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(n * GRPC_UNITS.iter().find(|(u, _)| *u == unit)?.1)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn grpc_timeout_parse_matches_the_grammar_on_any_bytes(value in vec(any::<u8>(), 0..12)) {
        let parsed = grpc_timeout::parse(&value).ok().map(|d| d.as_nanos());
        prop_assert_eq!(parsed, grpc_model(&value));
    }

    #[test]
    fn grpc_timeout_parse_matches_the_grammar_on_near_misses(
        value in "[0-9]{0,10}[HMSmunhsx .+-]?[0-9]?",
    ) {
        let parsed = grpc_timeout::parse(value.as_bytes()).ok().map(|d| d.as_nanos());
        prop_assert_eq!(parsed, grpc_model(value.as_bytes()));
    }

    #[test]
    fn grpc_timeout_rejects_long_values_and_bad_units(
        long in "[0-9]{9,20}",
        short in "[0-9]{1,8}",
        unit in 0..GRPC_UNITS.len(),
        bad in any::<char>().prop_filter("not a unit", |c| !"HMSmun".contains(*c)),
    ) {
        let too_long = format!("{long}{}", char::from(GRPC_UNITS[unit].0));
        let bad_unit = format!("{short}{bad}");
        prop_assert!(grpc_timeout::parse(too_long.as_bytes()).is_err());
        prop_assert!(grpc_timeout::parse(bad_unit.as_bytes()).is_err());
        prop_assert!(grpc_timeout::parse(short.as_bytes()).is_err());
    }

    /// `format` truncates to the finest unit that fits in 8 digits (clamping at 99999999H).
    #[test]
    fn grpc_timeout_format_round_trips_within_one_unit(d in any_duration()) {
        let value = grpc_timeout::format(d);
        let text = value.to_str().unwrap();
        let (digits, unit) = text.split_at(text.len() - 1);
        prop_assert!((1..=8).contains(&digits.len()), "{}", text);
        let position = GRPC_UNITS.iter().position(|(u, _)| *u == unit.as_bytes()[0]).unwrap();
        let scale = GRPC_UNITS[position].1;
        let back = grpc_timeout::parse(value.as_bytes()).unwrap().as_nanos();
        let nanos = d.as_nanos();
        prop_assert!(back <= nanos, "{:?} -> {} is longer", d, text);
        if unit == "H" && nanos / scale > GRPC_MAX {
            prop_assert_eq!(back, GRPC_MAX * scale);
        } else {
            prop_assert!(nanos - back < scale, "{:?} -> {} is a unit short", d, text);
        }
        if position > 0 {
            let finer = GRPC_UNITS[position - 1].1;
            prop_assert!(nanos / finer > GRPC_MAX, "{:?} -> {}: a finer unit fits", d, text);
        }
    }
}

// ---------------------------------------------------------------- traceparent

fn nonzero<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    any::<[u8; N]>().prop_filter("all zero", |id| id.iter().any(|&b| b != 0))
}

fn traceparent(version: &str, trace: &str, span: &str, flags: &str) -> String {
    format!("{version}-{trace}-{span}-{flags}")
}

fn parses(header: &str) -> bool {
    TraceContext::from_traceparent(header.as_bytes(), None).is_some()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn traceparent_never_panics(
        bytes in vec(any::<u8>(), 0..80),
        text in "[0-9a-fA-F-]{0,70}",
    ) {
        let _ = TraceContext::from_traceparent(&bytes, None);
        let _ = TraceContext::from_traceparent(text.as_bytes(), None);
    }

    /// A printed header parses back; the child header keeps the trace and the flag.
    #[test]
    fn traceparent_round_trips(trace in nonzero(), span in nonzero(), flags in any::<u8>()) {
        let (t, s) = (TraceId(trace).to_string(), SpanId(span).to_string());
        prop_assert!(t.len() == 32 && s.len() == 16);
        let header = traceparent("00", &t, &s, &format!("{flags:02x}"));
        let ctx = TraceContext::from_traceparent(header.as_bytes(), None).unwrap();
        prop_assert_eq!(ctx.trace_id, TraceId(trace));
        prop_assert_eq!(ctx.parent_span_id, Some(SpanId(span)));
        prop_assert_eq!(ctx.sampled, flags & 1 == 1);
        prop_assert_ne!(ctx.span_id, SpanId([0; 8]));
        let header = ctx.child_traceparent();
        prop_assert_eq!(header.len(), 55);
        let child = TraceContext::from_traceparent(header.as_bytes(), None).unwrap();
        prop_assert_eq!((child.trace_id, child.sampled), (ctx.trace_id, ctx.sampled));
        prop_assert!(child.parent_span_id.is_some_and(|p| p != SpanId([0; 8])));
    }

    #[test]
    fn traceparent_rejects_what_w3c_rejects(
        trace in nonzero::<16>(),
        span in nonzero::<8>(),
        flags in any::<u8>(),
        future in 1u8..0xff,
        extra in "[0-9a-z]{0,8}",
    ) {
        let (t, s) = (TraceId(trace).to_string(), SpanId(span).to_string());
        let f = format!("{flags:02x}");
        prop_assert!(parses(&traceparent("00", &t, &s, &f)));
        prop_assert!(!parses(&traceparent("00", &"0".repeat(32), &s, &f)), "zero trace id");
        prop_assert!(!parses(&traceparent("00", &t, &"0".repeat(16), &f)), "zero span id");
        prop_assert!(!parses(&traceparent("ff", &t, &s, &f)), "version ff");
        prop_assert!(!parses(&traceparent("00", &t[1..], &s, &f)), "short trace id");
        let long_span = s.clone() + "0";
        prop_assert!(!parses(&traceparent("00", &t, &long_span, &f)), "long span id");
        prop_assert!(!parses(&traceparent("0", &t, &s, &f)), "short version");
        prop_assert!(!parses(&traceparent("00", &t, &s, &f[1..])), "short flags");
        let upper = traceparent("00", &t.to_uppercase(), &s.to_uppercase(), &f.to_uppercase());
        if upper != traceparent("00", &t, &s, &f) {
            prop_assert!(!parses(&upper), "uppercase hex");
        }
        // Version 00 has exactly four fields; a later version may append more.
        let more = format!("{}-{extra}", traceparent("00", &t, &s, &f));
        prop_assert!(!parses(&more), "extra field on version 00");
        let version = format!("{future:02x}");
        let later = format!("{}-{extra}", traceparent(&version, &t, &s, &f));
        prop_assert!(parses(&later), "extra field on version {:02x}", future);
    }
}

// ---------------------------------------------------------------- config durations

proptest! {
    #![proptest_config(config())]

    #[test]
    fn duration_parse_never_panics(text in any::<String>(), like in "[0-9.µsmhdnu \t]{0,30}") {
        let _ = duration::parse(&text);
        if let Ok(d) = duration::parse(&like) {
            prop_assert_eq!(duration::parse(&duration::format(d)), Ok(d));
        }
    }

    #[test]
    fn duration_format_round_trips(d in any_duration()) {
        prop_assert_eq!(duration::parse(&duration::format(d)), Ok(d));
        let json = serde_json::to_string(&HumanDuration(d)).unwrap();
        prop_assert_eq!(serde_json::from_str::<HumanDuration>(&json).unwrap(), HumanDuration(d));
    }

    #[test]
    fn duration_serde_needs_a_unit(n in 1u64.., negative in i64::MIN..0, text in any::<String>()) {
        prop_assert!(serde_json::from_str::<HumanDuration>(&n.to_string()).is_err());
        prop_assert!(serde_json::from_str::<HumanDuration>(&negative.to_string()).is_err());
        let json = serde_json::to_string(&text).unwrap();
        let read = serde_json::from_str::<HumanDuration>(&json).map(|h| h.0).ok();
        prop_assert_eq!(read, duration::parse(&text).ok());
    }
}

// ---------------------------------------------------------------- path and query

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Typed {
    n: u64,
    i: i32,
    s: String,
    b: bool,
}

#[truss::route(get, "/p/{n}/{i}/{s}/{b}")]
async fn by_path(
    #[path] n: u64,
    #[path] i: i32,
    #[path] s: String,
    #[path] b: bool,
) -> Result<Typed, truss::Error> {
    Ok(Typed { n, i, s, b })
}

#[truss::route(get, "/q")]
async fn by_query(#[query] q: Typed) -> Result<Typed, truss::Error> {
    Ok(q)
}

async fn echo(request: Request) -> axum::response::Response {
    let with_body = request.method() == Method::POST;
    truss::__private::bridge(request, with_body, |m: Typed, _| async move { Ok(m) }).await
}

fn app() -> Router {
    let bridge = Router::new().route("/b/{n}/{s}", get(echo).post(echo));
    truss::routes![by_path, by_query].merge(bridge)
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
}

/// One request through [`app`]: the status and the body.
fn send(method: Method, uri: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_vec()))
        .unwrap();
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let response = app().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await;
            (status, bytes.unwrap().to_vec())
        })
    })
}

/// Percent-encodes everything but the unreserved characters.
fn pct(bytes: &[u8]) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let one = |b: u8| {
        if keep(b) {
            char::from(b).to_string()
        } else {
            format!("%{b:02X}")
        }
    };
    bytes.iter().copied().map(one).collect()
}

/// Non-empty strings, often ones that look like numbers or booleans.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{1,12}".boxed(),
        any::<i64>().prop_map(|n| n.to_string()).boxed(),
        any::<f64>().prop_map(|f| f.to_string()).boxed(),
        any::<bool>().prop_map(|b| b.to_string()).boxed(),
    ]
}

fn typed() -> impl Strategy<Value = Typed> {
    let fields = (any::<u64>(), any::<i32>(), text(), any::<bool>());
    fields.prop_map(|(n, i, s, b)| Typed { n, i, s, b })
}

/// Segments that may be anything: any bytes encoded, or raw text with stray `%`.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(any::<u8>(), 1..12).prop_map(|b| pct(&b)),
        "[a-zA-Z0-9%._~-]{1,12}",
        any::<u64>().prop_map(|n| n.to_string()),
        Just("true".to_owned()),
    ]
}

/// Query strings of valid URI characters, stray `%` included.
const QUERY: &str = "[a-z0-9=&%+.;_-]{0,30}";
/// What any request to the decoders may get: never a 500 (nor a panic).
const OK_OR_400: [StatusCode; 2] = [StatusCode::OK, StatusCode::BAD_REQUEST];

fn check_reply(status: StatusCode, body: &[u8], expected: &Typed) -> Result<(), TestCaseError> {
    prop_assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(body));
    prop_assert_eq!(&serde_json::from_slice::<Typed>(body).unwrap(), expected);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn route_path_round_trips(t in typed()) {
        let uri = format!("/p/{}/{}/{}/{}", t.n, t.i, pct(t.s.as_bytes()), t.b);
        let (status, body) = send(Method::GET, &uri, b"");
        check_reply(status, &body, &t)?;
    }

    #[test]
    fn route_query_round_trips(t in typed()) {
        let uri = format!("/q?b={}&s={}&i={}&n={}", t.b, pct(t.s.as_bytes()), t.i, t.n);
        let (status, body) = send(Method::GET, &uri, b"");
        check_reply(status, &body, &t)?;
    }

    #[test]
    fn route_path_and_query_take_anything(segments in vec(segment(), 4), query in QUERY) {
        let (status, body) = send(Method::GET, &format!("/p/{}", segments.join("/")), b"");
        prop_assert!(OK_OR_400.contains(&status), "{}: {}", status, String::from_utf8_lossy(&body));
        let (status, body) = send(Method::GET, &format!("/q?{query}"), b"");
        prop_assert!(OK_OR_400.contains(&status), "{}: {}", status, String::from_utf8_lossy(&body));
    }

    #[test]
    fn bridge_query_round_trips(t in typed()) {
        let uri = format!("/b/{}/{}?i={}&b={}", t.n, pct(t.s.as_bytes()), t.i, t.b);
        let (status, body) = send(Method::GET, &uri, b"");
        check_reply(status, &body, &t)?;
    }

    /// Path values fill the message fields of their name over the JSON body's.
    #[test]
    fn bridge_body_round_trips(t in typed()) {
        let json = serde_json::json!({ "i": t.i, "b": t.b, "n": 0, "s": "path wins" });
        let uri = format!("/b/{}/{}", t.n, pct(t.s.as_bytes()));
        let (status, body) = send(Method::POST, &uri, json.to_string().as_bytes());
        check_reply(status, &body, &t)?;
    }

    #[test]
    fn bridge_takes_anything(
        n in segment(),
        s in segment(),
        query in QUERY,
        body in prop_oneof![vec(any::<u8>(), 0..40), json().prop_map(|v| v.to_string().into())],
    ) {
        for (method, uri, body) in [
            (Method::GET, format!("/b/{n}/{s}?{query}"), &b""[..]),
            (Method::POST, format!("/b/{n}/{s}"), &body[..]),
        ] {
            let (status, reply) = send(method, &uri, body);
            let reply = String::from_utf8_lossy(&reply);
            prop_assert!(OK_OR_400.contains(&status), "{} {}: {}", uri, status, reply);
        }
    }
}

// ---------------------------------------------------------------- error body

/// Small JSON values, objects often with the error body's field names.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..70_000).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        let key = "code|reason|message|metadata|[a-z]{1,2}";
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::from),
            btree_map(key, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What `from_http` reads from a JSON body: reason, message and metadata when it is
/// truss's error body (a u16 `code`, string `reason`/`message` and string map `metadata`
/// when present), else `None`. Serde also reads a struct from an array of its fields in
/// order, so `[404, "R", "m", {}]` counts too.
fn error_body_model(value: &Value) -> Option<(String, String, BTreeMap<String, String>)> {
    let names = ["code", "reason", "message", "metadata"];
    let fields = match value {
        Value::Object(o) => names.map(|k| o.get(k)),
        Value::Array(a) if (1..=4).contains(&a.len()) => [0, 1, 2, 3].map(|i| a.get(i)),
        _ => return None,
    };
    u16::try_from(fields[0]?.as_u64()?).ok()?;
    let text = |v: Option<&Value>| v.map_or(Some(String::new()), |v| v.as_str().map(str::to_owned));
    let metadata = match fields[3] {
        None => BTreeMap::new(),
        Some(m) => m
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect::<Option<_>>()?,
    };
    Some((text(fields[1])?, text(fields[2])?, metadata))
}

fn any_error() -> impl Strategy<Value = truss::Error> {
    let metadata = btree_map(any::<String>(), any::<String>(), 0..4);
    let parts = (any::<u16>(), any::<String>(), any::<String>(), metadata);
    parts.prop_map(|(code, reason, message, metadata)| {
        let err = truss::Error::new(code, reason, message);
        metadata
            .into_iter()
            .fold(err, |e, (k, v)| e.with_metadata(k, v))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn error_from_http_never_panics(code in 100u16..1000, body in vec(any::<u8>(), 0..64)) {
        let status = StatusCode::from_u16(code).unwrap();
        let err = truss::Error::from_http(status, &body);
        prop_assert_eq!(err.code(), code);
        if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
            prop_assert_eq!(err.reason(), "");
            let text = String::from_utf8_lossy(&body);
            prop_assert_eq!(err.message(), text.trim());
            prop_assert!(err.metadata().is_empty());
        }
    }

    #[test]
    fn error_from_http_reads_json_bodies(code in 100u16..1000, value in json()) {
        let body = value.to_string();
        let err = truss::Error::from_http(StatusCode::from_u16(code).unwrap(), body.as_bytes());
        prop_assert_eq!(err.code(), code);
        let read = (err.reason().to_owned(), err.message().to_owned(), err.metadata().clone());
        let fallback = (String::new(), body.trim().to_owned(), BTreeMap::new());
        let expected = error_body_model(&value).unwrap_or(fallback);
        prop_assert_eq!(read, expected);
    }

    #[test]
    fn error_body_round_trips(err in any_error()) {
        let response = err.clone().into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX);
        let body = RUNTIME.with(|rt| rt.block_on(body));
        let back = truss::Error::from_http(status, &body.unwrap());
        let sent = if (100..600).contains(&err.code()) { err.code() } else { 500 };
        prop_assert_eq!(back.code(), sent);
        prop_assert_eq!(back.reason(), err.reason());
        prop_assert_eq!(back.message(), err.message());
        prop_assert_eq!(back.metadata(), err.metadata());
    }
}
