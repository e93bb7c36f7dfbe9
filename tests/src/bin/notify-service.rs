//! The `notify` example, built here so the consumer tests can start it as a process
//! (`CARGO_BIN_EXE_notify-service`) and signal it; the same code as `cargo run -p notify`.

#[tokio::main]
async fn main() -> Result<(), truss::AppError> {
    notify::main().await
}
