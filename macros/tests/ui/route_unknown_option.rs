#[truss::route(get, "/ping", retries = 3)]
async fn ping() -> Result<&'static str, truss::Error> {
    Ok("pong")
}

fn main() {}
