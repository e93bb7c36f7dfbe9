//! `{{name}}`: `cargo run` serves on the defaults in `config.toml`; `--config other.toml` and
//! `TRUSS_*` environment variables override them.

#[tokio::main]
async fn main() -> Result<(), truss::AppError> {
    let config = truss::config::ConfigLoader::new()
        .defaults({{name_snake}}::DEFAULTS)
        .load::<{{name_snake}}::AppConfig>()?;
    {{name_snake}}::app(&config).await?.run().await
}
