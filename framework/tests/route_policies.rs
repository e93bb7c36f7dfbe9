//! Policies declared in `#[truss::route]` and `#[truss::grpc]` attributes reach
//! `truss::auth::declared`, keyed `"<METHOD> <template>"` and `"/<service>/<Method>"`.

use truss::auth::{RoutePolicy, declared};

#[truss::route(post, "/things", scope = "things:write")]
async fn create_thing() -> Result<&'static str, truss::Error> {
    Ok("created")
}

#[truss::route(get, "/things", auth = "public")]
async fn list_things() -> Result<&'static str, truss::Error> {
    Ok("things")
}

#[truss::route(get, "/things/{id}", auth = "required")]
async fn get_thing(#[path] id: u64) -> Result<u64, truss::Error> {
    Ok(id)
}

#[truss::route(delete, "/things/{id}")]
async fn delete_thing(#[path] id: u64) -> Result<u64, truss::Error> {
    Ok(id)
}

/// What tonic-build generates for a `things.v1.Things` service, by hand.
mod pb {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct Thing {
        pub id: u64,
    }

    pub mod things_server {
        pub const SERVICE_NAME: &str = "things.v1.Things";

        #[tonic::async_trait]
        pub trait Things: Send + Sync + 'static {
            async fn create_thing(
                &self,
                request: tonic::Request<super::Thing>,
            ) -> Result<tonic::Response<super::Thing>, tonic::Status>;
            async fn get_thing(
                &self,
                request: tonic::Request<super::Thing>,
            ) -> Result<tonic::Response<super::Thing>, tonic::Status>;
            async fn list_things(
                &self,
                request: tonic::Request<super::Thing>,
            ) -> Result<tonic::Response<super::Thing>, tonic::Status>;
            async fn delete_thing(
                &self,
                request: tonic::Request<super::Thing>,
            ) -> Result<tonic::Response<super::Thing>, tonic::Status>;
        }
    }
}

struct ThingsApi;

#[truss::grpc(pb::things_server::Things)]
impl ThingsApi {
    #[http(post, "/v1/things", scope = "things:write")]
    async fn create_thing(&self, req: pb::Thing) -> Result<pb::Thing, truss::Error> {
        Ok(req)
    }

    #[auth(public)]
    #[http(get, "/v1/things/{id}")]
    async fn get_thing(&self, req: pb::Thing) -> Result<pb::Thing, truss::Error> {
        Ok(req)
    }

    #[auth(required)]
    async fn list_things(&self, req: pb::Thing) -> Result<pb::Thing, truss::Error> {
        Ok(req)
    }

    #[raw]
    #[auth(scope = "things:admin")]
    async fn delete_thing(
        &self,
        request: tonic::Request<pb::Thing>,
    ) -> Result<tonic::Response<pb::Thing>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }
}

#[test]
fn route_attributes_declare_policies() {
    assert_eq!(
        declared("POST /things"),
        Some(RoutePolicy::Scope("things:write".into()))
    );
    assert_eq!(declared("GET /things"), Some(RoutePolicy::Public));
    assert_eq!(
        declared("GET /things/{id}"),
        Some(RoutePolicy::Authenticated)
    );
    assert_eq!(declared("DELETE /things/{id}"), None);
    // The routes still build.
    let _router: axum::Router = truss::routes![create_thing, list_things, get_thing, delete_thing];
}

#[test]
fn grpc_attributes_declare_policies_for_both_routes() {
    let scoped = Some(RoutePolicy::scope("things:write"));
    assert_eq!(declared("/things.v1.Things/CreateThing"), scoped);
    assert_eq!(declared("POST /v1/things"), scoped);
    assert_eq!(
        declared("/things.v1.Things/GetThing"),
        Some(RoutePolicy::Public)
    );
    assert_eq!(declared("GET /v1/things/{id}"), Some(RoutePolicy::Public));
    assert_eq!(
        declared("/things.v1.Things/ListThings"),
        Some(RoutePolicy::Authenticated)
    );
    assert_eq!(
        declared("/things.v1.Things/DeleteThing"),
        Some(RoutePolicy::scope("things:admin"))
    );
    let _router: axum::Router = std::sync::Arc::new(ThingsApi).http_routes();
}

/// The `#[auth]` markers are gone from the generated trait impl, which still answers.
#[tokio::test]
async fn grpc_methods_still_answer() {
    use pb::things_server::Things;
    let request = |id| tonic::Request::new(pb::Thing { id });
    let api = ThingsApi;
    for (n, reply) in [
        Things::create_thing(&api, request(1)).await,
        Things::get_thing(&api, request(2)).await,
        Things::list_things(&api, request(3)).await,
        Things::delete_thing(&api, request(4)).await,
    ]
    .into_iter()
    .enumerate()
    {
        let id = reply.map(|r| r.into_inner().id).ok();
        assert_eq!(id, u64::try_from(n + 1).ok());
    }
}
