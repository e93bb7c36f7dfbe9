//! The handler macros and the error model, driven over real HTTP and gRPC.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use tonic_types::StatusExt;
use truss::App;
use truss::validate::{FieldErrors, Validate};
use truss_tests::{call, local_config};

pub mod pb {
    tonic::include_proto!("accounts.v1");
    /// The descriptors, for the OpenAPI document of the `#[http]` routes.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/accounts_descriptor.bin"));
}

use pb::accounts_client::AccountsClient;
use pb::accounts_server::AccountsServer;
use pb::{Account, GetAccountRequest, OpenAccountRequest};

#[derive(Debug, truss::Error)]
enum AccountError {
    #[error(
        code = 404,
        reason = "ACCOUNT_NOT_FOUND",
        message = "account {0} not found"
    )]
    NotFound(u64),
    #[error(
        code = 409,
        reason = "OWNER_TAKEN",
        message = "{owner} already has an account"
    )]
    OwnerTaken { owner: String },
    #[error(transparent)]
    Upstream(truss::Error),
}

#[derive(Default)]
struct Bank {
    accounts: Mutex<BTreeMap<u64, Account>>,
}

impl Bank {
    fn get(&self, id: u64) -> Result<Account, AccountError> {
        let accounts = self.accounts.lock().unwrap();
        accounts.get(&id).cloned().ok_or(AccountError::NotFound(id))
    }

    fn open(&self, req: OpenAccountRequest) -> Result<Account, AccountError> {
        let mut accounts = self.accounts.lock().unwrap();
        if accounts.values().any(|a| a.owner == req.owner) {
            return Err(AccountError::OwnerTaken { owner: req.owner });
        }
        let id = accounts.len() as u64 + 1;
        let account = Account {
            id,
            owner: req.owner,
            balance: req.balance,
            trace_id: String::new(),
        };
        accounts.insert(id, account.clone());
        Ok(account)
    }
}

impl Validate for OpenAccountRequest {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if self.owner.trim().is_empty() {
            errors.add("owner", "must not be empty");
        }
        if self.balance < 0 {
            errors.add("balance", "must not be negative");
        }
        errors.into_result()
    }
}

// ---- gRPC (and the same methods over HTTP/JSON) ----

struct AccountsApi(Arc<Bank>);

#[truss::grpc(pb::accounts_server::Accounts)]
impl AccountsApi {
    #[http(get, "/v1/accounts/{id}")]
    async fn get_account(
        &self,
        req: GetAccountRequest,
        ctx: truss::grpc::Context,
    ) -> Result<Account, AccountError> {
        let mut account = self.0.get(req.id)?;
        account.trace_id = ctx
            .trace()
            .map(|t| t.trace_id.to_string())
            .unwrap_or_default();
        Ok(account)
    }

    #[http(post, "/v1/accounts")]
    async fn open_account(&self, req: OpenAccountRequest) -> Result<Account, AccountError> {
        self.0.open(req)
    }
}

// ---- HTTP handlers ----

#[derive(Deserialize, truss::JsonSchema)]
struct Page {
    #[serde(default)]
    offset: usize,
    #[serde(default = "ten")]
    limit: usize,
}

fn ten() -> usize {
    10
}

impl Validate for Page {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if !(1..=100).contains(&self.limit) {
            errors.add("limit", "must be between 1 and 100");
        }
        errors.into_result()
    }
}

#[truss::route(post, "/accounts", status = 201)]
async fn open(
    #[state] bank: Arc<Bank>,
    #[body] req: OpenAccountRequest,
) -> Result<Account, AccountError> {
    bank.open(req)
}

#[truss::route(get, "/accounts/{id}")]
async fn get_one(#[state] bank: Arc<Bank>, #[path] id: u64) -> Result<Account, AccountError> {
    bank.get(id)
}

#[truss::route(get, "/accounts")]
async fn list(#[state] bank: Arc<Bank>, #[query] page: Page) -> Result<Vec<Account>, AccountError> {
    let accounts = bank.accounts.lock().unwrap();
    Ok(accounts
        .values()
        .skip(page.offset)
        .take(page.limit)
        .cloned()
        .collect())
}

#[truss::route(get, "/slow", timeout = "100ms")]
async fn slow() -> Result<&'static str, truss::Error> {
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok("late")
}

#[truss::route(get, "/limited", rate_limit = 0.01, burst = 2)]
async fn limited() -> Result<&'static str, truss::Error> {
    Ok("ok")
}

#[truss::route(get, "/broken")]
async fn broken() -> Result<(), truss::Error> {
    Err(truss::Error::internal("BROKEN", "always fails"))
}

#[truss::route(get, "/exempt", breaker = false)]
async fn exempt() -> Result<(), truss::Error> {
    Err(truss::Error::internal("BROKEN", "always fails"))
}

/// Calls the gRPC service downstream; matches its error by reason and re-raises it.
#[truss::route(get, "/remote/{id}")]
async fn remote(#[state] upstream: SocketAddr, #[path] id: u64) -> Result<Account, AccountError> {
    let mut client = AccountsClient::connect(format!("http://{upstream}"))
        .await
        .map_err(|e| truss::Error::unavailable("UPSTREAM_DOWN", e.to_string()))?;
    match client.get_account(GetAccountRequest { id }).await {
        Ok(reply) => Ok(reply.into_inner()),
        Err(status) => {
            let err = truss::Error::from(status);
            if err.is("ACCOUNT_NOT_FOUND") {
                // Matched: answered as our own domain error.
                return Err(AccountError::NotFound(id));
            }
            Err(err.into())
        }
    }
}

struct Served {
    app: truss::RunningApp,
    http: SocketAddr,
    grpc: SocketAddr,
}

async fn serve() -> Served {
    let bank = Arc::new(Bank::default());
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.breaker.strategy = truss::resilience::breaker::Strategy::StateMachine;
    config.breaker.state_machine.consecutive_failures = 3;
    config.breaker.state_machine.open_min = Duration::from_secs(600);
    config.breaker.state_machine.open_max = Duration::from_secs(600);
    let api = Arc::new(AccountsApi(bank.clone()));
    let http = truss::routes![open, get_one, list, slow, limited, broken, exempt]
        .with_state(bank.clone())
        .merge(api.clone().http_routes());
    let app = App::builder("accounts")
        .config(&config)
        .http(http)
        .grpc(AccountsServer::from_arc(api))
        .file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        // These messages derive serde (not pbjson): the document says so.
        .json_mapping(truss::openapi::JsonMapping::SerdeDerive)
        .start()
        .await
        .unwrap();
    let (http, grpc) = (app.http_addr().unwrap(), app.grpc_addr().unwrap());
    Served { app, http, grpc }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn http_handlers_decode_validate_and_map_errors() {
    let s = serve().await;

    let (status, headers, body) = call(
        s.http,
        "POST",
        "/accounts",
        Some(r#"{"owner":"ada","balance":5}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(json(&body)["owner"], "ada");

    let (status, _, body) = call(s.http, "GET", "/accounts/1", None).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["balance"], 5);

    // Validation: 400 naming every failing field.
    let (status, _, body) = call(
        s.http,
        "POST",
        "/accounts",
        Some(r#"{"owner":" ","balance":-1}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err = json(&body);
    assert_eq!(err["reason"], "VALIDATION_FAILED");
    assert_eq!(err["metadata"]["owner"], "must not be empty");
    assert_eq!(err["metadata"]["balance"], "must not be negative");

    // Domain errors: code and reason from the derive.
    let (status, _, body) = call(s.http, "POST", "/accounts", Some(r#"{"owner":"ada"}"#))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CONFLICT);
    let err = truss::Error::from_http(status, body.as_bytes());
    assert!(err.is("OWNER_TAKEN"), "{err}");
    assert_eq!(err.message(), "ada already has an account");

    let (status, _, body) = call(s.http, "GET", "/accounts/42", None).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["reason"], "ACCOUNT_NOT_FOUND");

    // Malformed input: a JSON error with a 4xx, never a panic.
    for (method, path, body, want, reason) in [
        ("POST", "/accounts", Some("{not json"), 400, "INVALID_BODY"),
        (
            "POST",
            "/accounts",
            Some(r#"{"owner": 7}"#),
            422,
            "INVALID_BODY",
        ),
        ("POST", "/accounts", None, 415, "INVALID_BODY"),
        ("GET", "/accounts/abc", None, 400, "INVALID_PATH"),
        ("GET", "/accounts?limit=x", None, 400, "INVALID_QUERY"),
        (
            "GET",
            "/accounts?limit=1000",
            None,
            400,
            "VALIDATION_FAILED",
        ),
    ] {
        let (status, _, text) = call(s.http, method, path, body).await.unwrap();
        assert_eq!(status.as_u16(), want, "{method} {path}: {text}");
        assert_eq!(json(&text)["reason"], reason, "{method} {path}: {text}");
    }

    let (status, _, body) = call(s.http, "GET", "/accounts?limit=1", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body).as_array().map(Vec::len), Some(1));

    s.app.shutdown().await.unwrap();
}

#[tokio::test]
async fn route_options_apply_per_route() {
    let s = serve().await;

    // timeout = "100ms" cuts a 30 s handler off (the app's default timeout is 30 s).
    let (status, _, body) = call(s.http, "GET", "/slow", None).await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    // Framework rejections use the same JSON error body as handlers.
    assert_eq!(json(&body)["reason"], "DEADLINE_EXCEEDED", "{body}");

    // rate_limit = 0.01, burst = 2: two pass, the third is limited.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            call(s.http, "GET", "/limited", None)
                .await
                .unwrap()
                .0
                .as_u16(),
        );
    }
    assert_eq!(codes, [200, 200, 429]);
    // Other routes are not limited by it.
    assert_eq!(
        call(s.http, "GET", "/accounts", None).await.unwrap().0,
        StatusCode::OK
    );

    // The breaker opens after 3 failures on a normal route, never on a `breaker = false` one.
    let mut broken = Vec::new();
    let mut exempt = Vec::new();
    let mut last = String::new();
    for _ in 0..6 {
        let (status, _, body) = call(s.http, "GET", "/broken", None).await.unwrap();
        broken.push(status.as_u16());
        last = body;
        exempt.push(
            call(s.http, "GET", "/exempt", None)
                .await
                .unwrap()
                .0
                .as_u16(),
        );
    }
    assert_eq!(broken, [500, 500, 500, 503, 503, 503]);
    assert_eq!(json(&last)["reason"], "CIRCUIT_OPEN", "{last}");
    assert_eq!(exempt, [500; 6]);

    s.app.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpc_methods_map_validation_and_domain_errors() {
    let s = serve().await;
    let mut client = AccountsClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();

    let account = client
        .open_account(OpenAccountRequest {
            owner: "bo".into(),
            balance: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((account.id, account.owner.as_str()), (1, "bo"));

    let got = client
        .get_account(GetAccountRequest { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.balance, 3);
    assert_eq!(got.trace_id.len(), 32, "the method sees the call's trace");

    // Validation: INVALID_ARGUMENT with one field violation per failing field.
    let status = client
        .open_account(OpenAccountRequest {
            owner: String::new(),
            balance: -2,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let violations = status
        .get_details_bad_request()
        .expect("a BadRequest detail")
        .field_violations;
    let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["balance", "owner"]);

    // Domain errors: gRPC code from the table, reason and metadata back on the client.
    let status = client
        .get_account(GetAccountRequest { id: 9 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let err = truss::Error::from(status);
    assert!(err.is("ACCOUNT_NOT_FOUND"));
    assert_eq!((err.code(), err.message()), (404, "account 9 not found"));

    let status = client
        .open_account(OpenAccountRequest {
            owner: "bo".into(),
            balance: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert_eq!(truss::Error::from(status).code(), 409);

    s.app.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpc_methods_also_serve_http_json() {
    let s = serve().await;

    let (status, _, body) = call(
        s.http,
        "POST",
        "/v1/accounts",
        Some(r#"{"owner":"cy","balance":8}"#),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = json(&body)["id"].as_u64().unwrap();

    let (status, headers, body) = call(s.http, "GET", &format!("/v1/accounts/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = json(&body);
    assert_eq!(
        (got["owner"].as_str(), got["balance"].as_i64()),
        (Some("cy"), Some(8))
    );
    assert_eq!(
        got["trace_id"].as_str(),
        headers["x-trace-id"].to_str().ok()
    );

    let (status, _, body) = call(s.http, "GET", "/v1/accounts/77", None).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["reason"], "ACCOUNT_NOT_FOUND");

    let (status, _, body) = call(s.http, "POST", "/v1/accounts", Some(r#"{"owner":""}"#))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["metadata"]["owner"], "must not be empty");

    let (status, _, body) = call(s.http, "GET", "/v1/accounts/x", None).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = call(s.http, "POST", "/v1/accounts", Some("[1]"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);

    s.app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_downstream_error_is_matched_and_re_raised() {
    let upstream = serve().await;
    // Only `remote` here: the accounts routes linked into this binary are not this app's.
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.http.openapi = false;
    let front = App::builder("front")
        .config(&config)
        .http(truss::routes![remote].with_state(upstream.grpc))
        .start()
        .await
        .unwrap();
    let http = front.http_addr().unwrap();

    let (status, _, body) = call(http, "GET", "/remote/5", None).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let err = truss::Error::from_http(status, body.as_bytes());
    assert!(err.is("ACCOUNT_NOT_FOUND"));
    assert_eq!(err.message(), "account 5 not found");

    // An error it does not match passes through unchanged (transparent variant).
    upstream.app.shutdown().await.unwrap();
    let (status, _, body) = call(http, "GET", "/remote/5", None).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(truss::Error::from_http(status, body.as_bytes()).is("UPSTREAM_DOWN"));

    front.shutdown().await.unwrap();
}
