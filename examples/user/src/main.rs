//! `user`: `cargo run -p user` (embedded defaults: HTTP :8081, gRPC :9081, admin :9181).

#[tokio::main]
async fn main() -> Result<(), truss::AppError> {
    user::main().await
}
