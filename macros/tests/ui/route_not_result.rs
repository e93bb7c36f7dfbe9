#[truss::route(get, "/ping")]
async fn ping() -> &'static str {
    "pong"
}

fn main() {}
