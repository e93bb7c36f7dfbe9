//! `notify`: `cargo run -p notify` (embedded defaults: HTTP :8083, admin :9183; reads the
//! `order.created` events of `order`'s outbox in `./data/order.db`).

#[tokio::main]
async fn main() -> Result<(), truss::AppError> {
    notify::main().await
}
