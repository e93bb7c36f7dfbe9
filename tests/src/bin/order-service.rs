//! The `order` example, built here so the end-to-end test can start it as a process
//! (`CARGO_BIN_EXE_order-service`); the same code as `cargo run -p order`.

#[tokio::main]
async fn main() -> Result<(), truss::AppError> {
    order::main().await
}
