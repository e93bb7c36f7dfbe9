#[derive(Debug, truss::Error)]
enum AppError {
    #[error(code = 200, reason = "FINE")]
    Fine,
}

fn main() {}
