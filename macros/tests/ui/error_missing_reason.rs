#[derive(Debug, truss::Error)]
enum AppError {
    #[error(code = 404, message = "gone")]
    Gone,
}

fn main() {}
