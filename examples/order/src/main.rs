//! `order`: `cargo run -p order` (embedded defaults: HTTP :8082, gRPC :9082, admin :9182;
//! finds the user service at 127.0.0.1:9081).

#[tokio::main]
async fn main() -> Result<(), truss::AppError> {
    order::main().await
}
