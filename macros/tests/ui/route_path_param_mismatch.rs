#[truss::route(get, "/users/{id}")]
async fn get_user(#[path] user_id: u64) -> Result<u64, truss::Error> {
    Ok(user_id)
}

fn main() {}
