//! The `user` example, built here so the end-to-end test can start it as a process
//! (`CARGO_BIN_EXE_user-service`); the same code as `cargo run -p user`.

#[tokio::main]
async fn main() -> Result<(), truss::AppError> {
    user::main().await
}
