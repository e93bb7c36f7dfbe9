#[truss::route(post, "/things", auth = "public", scope = "things:write")]
async fn create() -> Result<&'static str, truss::Error> {
    Ok("created")
}

fn main() {}
