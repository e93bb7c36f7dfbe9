#[truss::route(get, "/users/:id")]
async fn get_user(#[path] id: u64) -> Result<u64, truss::Error> {
    Ok(id)
}

fn main() {}
