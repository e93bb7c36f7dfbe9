#[truss::route(get, "/ping")]
fn ping() -> Result<&'static str, truss::Error> {
    Ok("pong")
}

fn main() {}
