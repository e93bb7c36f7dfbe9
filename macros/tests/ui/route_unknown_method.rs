#[truss::route(fetch, "/ping")]
async fn ping() -> Result<&'static str, truss::Error> {
    Ok("pong")
}

fn main() {}
