mod pb {
    pub mod greeter_server {
        pub const SERVICE_NAME: &str = "hello.v1.Greeter";
        pub trait Greeter {}
    }
}

struct Api;

#[truss::grpc(pb::greeter_server::Greeter)]
impl Api {
    #[auth(admin)]
    async fn say_hello(&self, name: String) -> Result<String, truss::Error> {
        Ok(name)
    }
}

fn main() {}
