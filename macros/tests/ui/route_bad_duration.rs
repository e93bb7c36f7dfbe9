#[truss::route(get, "/ping", timeout = "2 fortnights")]
async fn ping() -> Result<&'static str, truss::Error> {
    Ok("pong")
}

fn main() {}
