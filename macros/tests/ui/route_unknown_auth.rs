#[truss::route(get, "/ping", auth = "admin")]
async fn ping() -> Result<&'static str, truss::Error> {
    Ok("pong")
}

fn main() {}
