//! `hello`: run with `cargo run -p hello` (or `-- --config examples/hello/hello.toml`).

use hello::{Greeter, HelloConfig, routes};
use truss::config::Live;
use truss::{App, AppError, Config};

#[tokio::main]
async fn main() -> Result<(), AppError> {
    // Defaults < the file named by --config or TRUSS_CONFIG < TRUSS_* environment variables.
    let config = Config::<HelloConfig>::load()?;
    // `[app]` as a live value: editing the file (or SIGHUP) changes the greeting, no restart.
    let app: Live<HelloConfig> = config.live_app();

    App::builder("hello")
        .version(env!("CARGO_PKG_VERSION"))
        .config(&config)
        .http(routes(app.clone()))
        .grpc(Greeter::new(app).into_service())
        .file_descriptor_set(hello::pb::FILE_DESCRIPTOR_SET) // reflection: grpcurl & co.
        .run()
        .await
}
