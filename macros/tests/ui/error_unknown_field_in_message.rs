#[derive(Debug, truss::Error)]
enum AppError {
    #[error(code = 404, reason = "USER_NOT_FOUND", message = "user {id} not found")]
    NotFound { user_id: u64 },
}

fn main() {}
