//! `[auth]` on a real app: every algorithm family, key rotation, a JWKS served over HTTP,
//! and every kind of bad token, over HTTP and gRPC alike (one table for both).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use hello::pb::HelloRequest;
use hello::pb::greeter_client::GreeterClient;
use hello::{Greeter, HelloConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use truss::App;
use truss::auth::{AuthConfig, JwksConfig, KeyConfig};
use truss_tests::{H1, local_config};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/auth")
        .join(name)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const SECRET: &str = "test-secret-0123456789abcdef0123";

/// A verification key from config.
fn key(kid: Option<&str>, alg: &str) -> KeyConfig {
    let (secret, pem_file) = match alg {
        a if a.starts_with("HS") => (Some(SECRET.to_owned()), None),
        a if a.starts_with("RS") || a.starts_with("PS") => (None, Some(fixture("rsa.pub"))),
        "ES256" => (None, Some(fixture("ec256.pub"))),
        "ES384" => (None, Some(fixture("ec384.pub"))),
        _ => (None, Some(fixture("ed25519.pub"))),
    };
    KeyConfig {
        kid: kid.map(str::to_owned),
        alg: alg.to_owned(),
        secret,
        secret_file: None,
        pem_file,
    }
}

/// Signs `claims` with the fixture key of `alg`.
fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let read = |f: &str| std::fs::read(fixture(f)).unwrap();
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(SECRET.as_bytes()).unwrap()
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(&read("ec256.key")).unwrap(),
        Algorithm::ES384 => EncodingKey::from_ec_pem(&read("ec384.key")).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&read("ed25519.key")).unwrap(),
        _ => EncodingKey::from_rsa_pem(&read("rsa.key")).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key).unwrap()
}

fn claims() -> Value {
    json!({"sub": "ada", "exp": now() + 300, "iss": "truss-test", "aud": "hello", "scope": "hello:read"})
}

fn auth_config(keys: Vec<KeyConfig>) -> AuthConfig {
    AuthConfig {
        keys,
        issuer: vec!["truss-test".into()],
        audience: vec!["hello".into()],
        leeway: Duration::from_secs(5),
        ..AuthConfig::default()
    }
}

struct Hello {
    running: truss::RunningApp,
}

impl Hello {
    async fn start(auth: AuthConfig) -> Self {
        let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
        config.auth = auth;
        let app = HelloConfig::default();
        let running = App::builder("hello")
            .config(&config)
            .http(hello::routes(&app))
            .grpc(Greeter::new(&app).into_service())
            .start()
            .await
            .unwrap();
        Self { running }
    }

    /// `(status, reason)` of `GET /hello` with `authorization`; reason `OK` on success.
    async fn http(&self, authorization: Option<&str>) -> (u16, String, http::HeaderMap) {
        let mut h1 = H1::connect(self.running.http_addr().unwrap())
            .await
            .unwrap();
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let (status, headers, body) = h1.get_with("/hello?name=Ada", &headers).await.unwrap();
        let reason = match serde_json::from_str::<Value>(&body) {
            Ok(v) => v["reason"].as_str().unwrap_or_default().to_owned(),
            Err(_) => "OK".to_owned(),
        };
        (status.as_u16(), reason, headers)
    }

    /// `(grpc code, reason)` of `SayHello` with `authorization`.
    async fn grpc(&self, authorization: Option<&str>) -> (tonic::Code, String) {
        let addr = self.running.grpc_addr().unwrap();
        let mut client = GreeterClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let mut request = tonic::Request::new(HelloRequest { name: "Ada".into() });
        if let Some(a) = authorization {
            match a.parse() {
                Ok(value) => {
                    request.metadata_mut().insert("authorization", value);
                }
                Err(_) => return (tonic::Code::InvalidArgument, "UNSENDABLE".into()),
            }
        }
        match client.say_hello(request).await {
            Ok(_) => (tonic::Code::Ok, "OK".to_owned()),
            Err(status) => {
                let details = tonic_types::StatusExt::get_error_details(&status);
                let reason = details
                    .error_info()
                    .map(|i| i.reason.clone())
                    .unwrap_or_default();
                (status.code(), reason)
            }
        }
    }

    async fn stop(self) {
        self.running.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn every_algorithm_family_verifies() {
    let algs = [
        ("HS256", Algorithm::HS256),
        ("HS384", Algorithm::HS384),
        ("HS512", Algorithm::HS512),
        ("RS256", Algorithm::RS256),
        ("PS256", Algorithm::PS256),
        ("ES256", Algorithm::ES256),
        ("ES384", Algorithm::ES384),
        ("EdDSA", Algorithm::EdDSA),
    ];
    let keys = algs.iter().map(|(name, _)| key(Some(name), name)).collect();
    let app = Hello::start(auth_config(keys)).await;
    for (name, alg) in algs {
        let token = sign(alg, Some(name), &claims());
        let bearer = format!("Bearer {token}");
        assert_eq!(app.http(Some(&bearer)).await.0, 200, "{name} over HTTP");
        assert_eq!(
            app.grpc(Some(&bearer)).await.0,
            tonic::Code::Ok,
            "{name} over gRPC"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn two_kids_are_valid_at_once_during_a_rotation() {
    let mut old = key(Some("old"), "HS256");
    old.secret = Some("the-old-secret-0123456789abcdef01".into());
    let new = key(Some("new"), "HS256");
    let app = Hello::start(auth_config(vec![old, new])).await;
    let with_new = sign(Algorithm::HS256, Some("new"), &claims());
    let old_key = EncodingKey::from_secret(b"the-old-secret-0123456789abcdef01").unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("old".into());
    let with_old = encode(&header, &claims(), &old_key).unwrap();
    assert_eq!(app.http(Some(&format!("Bearer {with_new}"))).await.0, 200);
    assert_eq!(app.http(Some(&format!("Bearer {with_old}"))).await.0, 200);
    // A token without a kid is tried against every key of its algorithm.
    let no_kid = sign(Algorithm::HS256, None, &claims());
    assert_eq!(app.http(Some(&format!("Bearer {no_kid}"))).await.0, 200);
    // A token naming one kid but signed with the other key does not verify.
    let mut crossed = Header::new(Algorithm::HS256);
    crossed.kid = Some("new".into());
    let crossed = encode(&crossed, &claims(), &old_key).unwrap();
    let (status, reason, _) = app.http(Some(&format!("Bearer {crossed}"))).await;
    assert_eq!((status, reason.as_str()), (401, "TOKEN_INVALID"));
    app.stop().await;
}

/// Every bad token, over HTTP and gRPC: the same status and reason, never a panic.
#[tokio::test]
async fn bad_tokens_get_the_same_refusal_over_http_and_grpc() {
    let app = Hello::start(auth_config(vec![
        key(Some("hs"), "HS256"),
        key(Some("rs"), "RS256"),
    ]))
    .await;
    let mut expired = claims();
    expired["exp"] = json!(now() - 600);
    let mut early = claims();
    early["nbf"] = json!(now() + 600);
    let mut wrong_iss = claims();
    wrong_iss["iss"] = json!("someone-else");
    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!("other-service");
    let good = sign(Algorithm::HS256, Some("hs"), &claims());
    let none_alg = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let head = b64.encode(br#"{"alg":"none","typ":"JWT","kid":"hs"}"#);
        let body = b64.encode(claims().to_string());
        format!("{head}.{body}.")
    };
    // HS/RS confusion: HMAC-signed with the RSA public key's bytes, naming the RSA key.
    let confused = {
        let public = std::fs::read(fixture("rsa.pub")).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rs".into());
        encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(&public).unwrap(),
        )
        .unwrap()
    };
    let truncated = good[..good.len() - 10].to_owned();
    let huge = "a".repeat(100 * 1024);
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("good", Some(format!("Bearer {good}")), 200, "OK"),
        ("missing", None, 401, "TOKEN_MISSING"),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, Some("hs"), &expired)
            )),
            401,
            "TOKEN_EXPIRED",
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, Some("hs"), &early)
            )),
            401,
            "TOKEN_INVALID",
        ),
        (
            "wrong iss",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, Some("hs"), &wrong_iss)
            )),
            401,
            "TOKEN_INVALID",
        ),
        (
            "wrong aud",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, Some("hs"), &wrong_aud)
            )),
            401,
            "TOKEN_INVALID",
        ),
        (
            "alg none",
            Some(format!("Bearer {none_alg}")),
            401,
            "TOKEN_INVALID",
        ),
        (
            "HS/RS confusion",
            Some(format!("Bearer {confused}")),
            401,
            "TOKEN_INVALID",
        ),
        (
            "truncated",
            Some(format!("Bearer {truncated}")),
            401,
            "TOKEN_INVALID",
        ),
        (
            "garbage",
            Some("Bearer not.a.token".into()),
            401,
            "TOKEN_INVALID",
        ),
        (
            "not bearer",
            Some(format!("Basic {good}")),
            401,
            "TOKEN_INVALID",
        ),
        (
            "unknown kid",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::HS256, Some("nobody"), &claims())
            )),
            401,
            "TOKEN_INVALID",
        ),
        (
            "100 KiB",
            Some(format!("Bearer {huge}")),
            401,
            "TOKEN_INVALID",
        ),
    ];
    for (name, authorization, status, reason) in cases {
        let (got, got_reason, headers) = app.http(authorization.as_deref()).await;
        assert_eq!(
            (got, got_reason.as_str()),
            (status, reason),
            "{name} over HTTP"
        );
        if status == 401 {
            let challenge = headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer"),
                "{name}: WWW-Authenticate {challenge:?}"
            );
        }
        let code = if status == 200 {
            tonic::Code::Ok
        } else {
            tonic::Code::Unauthenticated
        };
        let (got, got_reason) = app.grpc(authorization.as_deref()).await;
        if name == "100 KiB" {
            // Over HTTP/2 the header list limit (16 KiB) refuses it before any handler runs.
            assert_eq!(got, tonic::Code::ResourceExhausted, "{name} over gRPC");
            continue;
        }
        assert_eq!(
            (got, got_reason.as_str()),
            (code, reason),
            "{name} over gRPC"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn scopes_and_public_routes_follow_config() {
    let mut auth = auth_config(vec![key(None, "HS256")]);
    auth.routes.insert(
        "GET /hello".into(),
        truss::auth::RouteConfig {
            public: false,
            scope: Some("hello:write".into()),
        },
    );
    auth.routes.insert(
        "/hello.v1.Greeter/SayHello".into(),
        truss::auth::RouteConfig {
            public: true,
            scope: None,
        },
    );
    let app = Hello::start(auth).await;
    let reader = format!("Bearer {}", sign(Algorithm::HS256, None, &claims()));
    let (status, reason, headers) = app.http(Some(&reader)).await;
    assert_eq!((status, reason.as_str()), (403, "INSUFFICIENT_SCOPE"));
    let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("hello:write"),
        "{challenge}"
    );
    let mut writer = claims();
    writer["scope"] = json!("hello:read hello:write");
    let writer = format!("Bearer {}", sign(Algorithm::HS256, None, &writer));
    assert_eq!(app.http(Some(&writer)).await.0, 200);
    // The public gRPC method answers without a token, and ignores a bad one.
    assert_eq!(app.grpc(None).await.0, tonic::Code::Ok);
    assert_eq!(app.grpc(Some("Bearer garbage")).await.0, tonic::Code::Ok);
    app.stop().await;
}

/// Route policies at the layer: `HEAD` takes `GET`'s policy (axum answers it with the `GET`
/// handler); a public route ignores an `Authorization` header of another scheme (a login
/// route taking `Basic` credentials), which is still a 401 elsewhere; and an HTTP catch-all
/// named like tonic's mount (`/files/{*rest}`) keeps its own policy.
#[tokio::test]
async fn head_takes_gets_policy_and_public_routes_ignore_other_schemes() {
    use tower::ServiceExt;

    let mut auth = auth_config(vec![key(None, "HS256")]);
    let route = |public: bool, scope: Option<&str>| truss::auth::RouteConfig {
        public,
        scope: scope.map(str::to_owned),
    };
    auth.routes
        .insert("GET /admin".into(), route(false, Some("admin")));
    auth.routes.insert("POST /login".into(), route(true, None));
    // The shape of a tonic mount, on an HTTP route: still found by its template.
    auth.routes
        .insert("GET /files/{*rest}".into(), route(false, None));
    auth.default = truss::auth::DefaultPolicy::Public;
    let verifier = Arc::new(truss::auth::Verifier::new(&auth).unwrap());
    let app = Router::new()
        .route("/admin", get(|| async { "secret" }))
        .route("/login", axum::routing::post(|| async { "welcome" }))
        .route("/files/{*rest}", get(|| async { "a file" }))
        .layer(truss::auth::AuthLayer::new(&auth, verifier));
    let status = |method: &str, path: &str, authorization: Option<&str>| {
        let mut request = http::Request::builder().method(method).uri(path);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let request = request.body(axum::body::Body::empty()).unwrap();
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status().as_u16() }
    };
    let reader = format!("Bearer {}", sign(Algorithm::HS256, None, &claims()));
    let mut admin = claims();
    admin["scope"] = json!("admin");
    let admin = format!("Bearer {}", sign(Algorithm::HS256, None, &admin));
    for method in ["GET", "HEAD"] {
        assert_eq!(status(method, "/admin", None).await, 401, "{method}");
        assert_eq!(
            status(method, "/admin", Some(&reader)).await,
            403,
            "{method}"
        );
        assert_eq!(
            status(method, "/admin", Some(&admin)).await,
            200,
            "{method}"
        );
    }
    let basic = "Basic YWRhOnB3";
    assert_eq!(status("POST", "/login", Some(basic)).await, 200);
    assert_eq!(status("POST", "/login", Some("Bearer garbage")).await, 200);
    assert_eq!(status("GET", "/admin", Some(basic)).await, 401);
    assert_eq!(status("GET", "/files/a/b.txt", None).await, 401);
    assert_eq!(status("GET", "/files/a/b.txt", Some(&reader)).await, 200);
}

/// A JWKS served by a test HTTP server: fetched at start, one early refresh for an unknown
/// kid however many requests carry it, and the cached keys keep working once it is down.
#[tokio::test]
async fn jwks_refreshes_once_for_an_unknown_kid_and_survives_its_server_going_down() {
    let rsa = std::fs::read(fixture("rsa.pub")).unwrap();
    let jwk_of = |kid: &str| {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(&rsa).unwrap();
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_decoding_key(&key, Some(Algorithm::RS256)).unwrap();
        jwk.common.key_id = Some(kid.into());
        serde_json::to_value(jwk).unwrap()
    };
    let served = Arc::new(std::sync::Mutex::new(json!({"keys": [jwk_of("k1")]})));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (jwks_addr, server) = {
        let (served, fetches) = (served.clone(), fetches.clone());
        let router = Router::new().route(
            "/jwks.json",
            get(move || async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                axum::Json(served.lock().unwrap().clone())
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        (
            addr,
            tokio::spawn(async move { axum::serve(listener, router).await }),
        )
    };
    let auth = AuthConfig {
        jwks: JwksConfig {
            url: Some(format!("http://{jwks_addr}/jwks.json")),
            ..JwksConfig::default()
        },
        ..auth_config(Vec::new())
    };
    let app = Hello::start(auth).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "fetched once at start");
    let k1 = format!("Bearer {}", sign(Algorithm::RS256, Some("k1"), &claims()));
    assert_eq!(app.http(Some(&k1)).await.0, 200);

    // The issuer rotates to k2: the first request naming it refreshes, the rest do not.
    served.lock().unwrap()["keys"] = json!([jwk_of("k1"), jwk_of("k2")]);
    let k2 = format!("Bearer {}", sign(Algorithm::RS256, Some("k2"), &claims()));
    let answers = futures_join(&app, &k2, 8).await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "one early refresh for the new kid"
    );
    // Another unknown kid within min_refresh: no fetch, refused.
    let k3 = format!("Bearer {}", sign(Algorithm::RS256, Some("k3"), &claims()));
    assert_eq!(app.http(Some(&k3)).await.1, "TOKEN_INVALID");
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "min_refresh holds");

    // The JWKS server goes away: cached keys still verify.
    server.abort();
    let _ = server.await;
    assert_eq!(app.http(Some(&k1)).await.0, 200);
    assert_eq!(app.grpc(Some(&k2)).await.0, tonic::Code::Ok);
    app.stop().await;
}

/// A reload that changes `[auth]` builds a new verifier: it starts from the JWKS keys in
/// force, so a JWKS server that is down at that moment does not refuse their tokens.
#[tokio::test]
async fn a_new_verifier_keeps_the_jwks_keys_in_force() {
    let rsa = std::fs::read(fixture("rsa.pub")).unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&rsa).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&key, Some(Algorithm::RS256)).unwrap();
    jwk.common.key_id = Some("k1".into());
    let document = json!({"keys": [jwk]});
    let router = Router::new().route(
        "/jwks.json",
        get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let mut auth = AuthConfig {
        jwks: JwksConfig {
            url: Some(format!("http://{jwks_addr}/jwks.json")),
            ..JwksConfig::default()
        },
        ..auth_config(Vec::new())
    };
    let before = Arc::new(truss::auth::Verifier::new(&auth).unwrap());
    let _refreshing = before.start().await;
    let k1 = sign(Algorithm::RS256, Some("k1"), &claims());
    assert!(before.verify(&k1).await.is_ok());

    // The JWKS server goes away; a reload adds a route policy.
    server.abort();
    let _ = server.await;
    auth.routes.insert(
        "GET /admin".into(),
        truss::auth::RouteConfig {
            public: false,
            scope: Some("admin".into()),
        },
    );
    let after = Arc::new(truss::auth::Verifier::new(&auth).unwrap());
    after.keep_jwks_keys_of(&before);
    let _refreshing = after.start().await;
    assert!(
        after.verify(&k1).await.is_ok(),
        "the JWKS keys stayed in force"
    );
    // Without them, the failed first fetch leaves no key at all.
    let fresh = Arc::new(truss::auth::Verifier::new(&auth).unwrap());
    let _refreshing = fresh.start().await;
    assert!(matches!(
        fresh.verify(&k1).await,
        Err(truss::auth::AuthError::Unavailable)
    ));
}

/// `n` concurrent `GET /hello` calls with `authorization`, each on its own connection.
async fn futures_join(app: &Hello, authorization: &str, n: usize) -> Vec<u16> {
    let addr = app.running.http_addr().unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let authorization = authorization.to_owned();
        set.spawn(async move {
            let mut h1 = H1::connect(addr).await.unwrap();
            let headers = [("authorization", authorization.as_str())];
            h1.get_with("/hello?name=Ada", &headers)
                .await
                .unwrap()
                .0
                .as_u16()
        });
    }
    set.join_all().await
}

#[tokio::test]
async fn the_admin_listener_is_never_behind_auth_and_decisions_are_counted() {
    let app = Hello::start(auth_config(vec![key(None, "HS256")])).await;
    assert_eq!(app.http(None).await.1, "TOKEN_MISSING");
    let token = format!("Bearer {}", sign(Algorithm::HS256, None, &claims()));
    assert_eq!(app.http(Some(&token)).await.0, 200);
    let admin = app.running.admin_addr();
    let (status, _) = truss_tests::get(admin, "/healthz").await.unwrap();
    assert_eq!(status, 200, "health needs no token");
    let (status, text) = truss_tests::get(admin, "/metrics").await.unwrap();
    assert_eq!(status, 200, "metrics need no token");
    let count = |result: &str| {
        let needle = format!("truss_auth_total{{route=\"/hello\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(needle.as_str()))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_default()
    };
    assert!(count("missing") >= 1.0, "{text}");
    assert!(count("ok") >= 1.0, "{text}");
    truss_tests::promtool_check(&text).unwrap();
    app.stop().await;
}

/// A relay app calls the protected `hello` over gRPC from its handler, through a truss client
/// with the given credentials.
async fn relay(
    auth: truss::auth::ClientAuth,
    to: SocketAddr,
    own: AuthConfig,
) -> truss::RunningApp {
    use truss::client::{ClientConfig, grpc_client};
    let instance = truss::registry::Instance {
        id: "hello-1".into(),
        name: "hello".into(),
        version: "1".into(),
        http: None,
        grpc: Some(to),
        metadata: Default::default(),
    };
    let (_tx, rx) = tokio::sync::watch::channel(vec![instance]);
    std::mem::forget(_tx);
    let client = ClientConfig {
        auth,
        ..ClientConfig::default()
    };
    let channel = grpc_client("hello", rx, &client).unwrap();
    let router = Router::new().route(
        "/relay",
        get(move || {
            let mut greeter = GreeterClient::new(channel.clone());
            async move {
                match greeter
                    .say_hello(HelloRequest {
                        name: "relay".into(),
                    })
                    .await
                {
                    Ok(reply) => reply.into_inner().message,
                    Err(status) => format!("{:?}", status.code()),
                }
            }
        }),
    );
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.auth = own;
    App::builder("relay")
        .config(&config)
        .http(router)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn clients_forward_the_callers_token_or_send_their_own() {
    let hello = Hello::start(auth_config(vec![key(None, "HS256")])).await;
    let to = hello.running.grpc_addr().unwrap();
    let caller = sign(Algorithm::HS256, None, &claims());
    let relay_of = |app: &truss::RunningApp| app.http_addr().unwrap();
    let ask = |addr: SocketAddr, token: Option<String>| async move {
        let mut h1 = H1::connect(addr).await.unwrap();
        let header = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        h1.get_with("/relay", &headers).await.unwrap().2
    };

    // Forward: the caller's token reaches hello.
    let forwarding = relay(
        truss::auth::ClientAuth::Forward,
        to,
        auth_config(vec![key(None, "HS256")]),
    )
    .await;
    assert_eq!(
        ask(relay_of(&forwarding), Some(caller.clone())).await,
        "Hello, relay!"
    );
    forwarding.shutdown().await.unwrap();

    // None: hello refuses the call.
    let silent = relay(
        truss::auth::ClientAuth::None,
        to,
        auth_config(vec![key(None, "HS256")]),
    )
    .await;
    assert_eq!(
        ask(relay_of(&silent), Some(caller.clone())).await,
        "Unauthenticated"
    );
    silent.shutdown().await.unwrap();

    // Service: the relay's own token (a client credential), with no caller at all.
    let token: truss::auth::TokenConfig = serde_json::from_value(json!({
        "alg": "HS256", "secret": SECRET, "issuer": "truss-test", "audience": ["hello"], "ttl": "1m"
    }))
    .unwrap();
    let issuer = Arc::new(truss::auth::TokenIssuer::new(&token, "relay").unwrap());
    let public = AuthConfig {
        default: truss::auth::DefaultPolicy::Public,
        ..auth_config(vec![key(None, "HS256")])
    };
    let service = relay(truss::auth::ClientAuth::Service(issuer), to, public).await;
    assert_eq!(ask(relay_of(&service), None).await, "Hello, relay!");
    service.shutdown().await.unwrap();
    hello.stop().await;
}

/// Serves `router` over TLS with the certificate `tls_certs` made in `dir`.
async fn serve_tls(dir: &std::path::Path, router: Router) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn jwks_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    truss_tests::tls_certs(dir.path());
    let rsa = std::fs::read(fixture("rsa.pub")).unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&rsa).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&key, Some(Algorithm::RS256)).unwrap();
    jwk.common.key_id = Some("tls".into());
    let set = json!({"keys": [jwk]});
    let router = Router::new().route(
        "/jwks.json",
        get(move || async move { axum::Json(set.clone()) }),
    );
    let addr = serve_tls(dir.path(), router).await;
    let url = format!("https://127.0.0.1:{}/jwks.json", addr.port());
    let token = format!("Bearer {}", sign(Algorithm::RS256, Some("tls"), &claims()));

    // Trusting the private CA: the keys load, the token verifies.
    let trusted = AuthConfig {
        jwks: JwksConfig {
            url: Some(url.clone()),
            ca_file: Some(dir.path().join("ca.pem")),
            ..JwksConfig::default()
        },
        ..auth_config(Vec::new())
    };
    let app = Hello::start(trusted).await;
    assert_eq!(app.http(Some(&token)).await.0, 200);
    app.stop().await;

    // Without it the certificate is not trusted: no keys, 503 rather than a wrong 401.
    let untrusted = AuthConfig {
        jwks: JwksConfig {
            url: Some(url),
            ..JwksConfig::default()
        },
        ..auth_config(Vec::new())
    };
    let app = Hello::start(untrusted).await;
    let (status, reason, _) = app.http(Some(&token)).await;
    assert_eq!((status, reason.as_str()), (503, "AUTH_UNAVAILABLE"));
    app.stop().await;
}
