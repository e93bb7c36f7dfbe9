pub trait Greeter {}

struct Api;

#[truss::grpc(Greeter)]
impl Api {
    async fn say_hello(self, name: String) -> Result<String, truss::Error> {
        Ok(name)
    }
}

fn main() {}
