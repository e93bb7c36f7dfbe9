//! gRPC and HTTP/JSON: one `#[truss::grpc]` impl serves both. Depends on the service layer;
//! converts between wire messages and domain types.

use std::sync::Arc;

use truss::validate::{FieldErrors, Validate};

use crate::domain::{self, NewUser, UserError, UserPatch};
use crate::pb;
use crate::repository::UserRepository;
use crate::service::{MAX_PAGE, UserService};

/// The transport adapter over a [`UserService`].
pub struct UsersApi<R> {
    service: Arc<UserService<R>>,
}

impl<R> UsersApi<R> {
    /// Serves `service`.
    pub fn new(service: Arc<UserService<R>>) -> Self {
        Self { service }
    }
}

fn wire(user: domain::User) -> pb::User {
    pb::User {
        id: user.id,
        name: user.name,
        email: user.email,
    }
}

fn optional(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

#[truss::grpc(pb::users_server::Users)]
impl<R: UserRepository> UsersApi<R> {
    #[http(post, "/v1/users", scope = "users:write")]
    async fn create_user(&self, req: pb::CreateUserRequest) -> Result<pb::User, UserError> {
        let new = NewUser {
            name: req.name.trim().to_owned(),
            email: req.email,
        };
        self.service.create(new).await.map(wire)
    }

    #[http(get, "/v1/users/{id}", auth = "public")]
    async fn get_user(&self, req: pb::GetUserRequest) -> Result<pb::User, UserError> {
        self.service.get(req.id).await.map(wire)
    }

    #[http(get, "/v1/users", auth = "public")]
    async fn list_users(
        &self,
        req: pb::ListUsersRequest,
    ) -> Result<pb::ListUsersResponse, UserError> {
        let page = self
            .service
            .list(req.page_size as usize, &req.page_token)
            .await?;
        Ok(pb::ListUsersResponse {
            users: page.users.into_iter().map(wire).collect(),
            next_page_token: page.next.unwrap_or_default(),
        })
    }

    #[http(patch, "/v1/users/{id}", scope = "users:write")]
    async fn update_user(&self, req: pb::UpdateUserRequest) -> Result<pb::User, UserError> {
        let patch = UserPatch {
            name: optional(req.name.trim().to_owned()),
            email: optional(req.email),
        };
        self.service.update(req.id, patch).await.map(wire)
    }

    #[http(delete, "/v1/users/{id}", scope = "users:write")]
    async fn delete_user(
        &self,
        req: pb::DeleteUserRequest,
    ) -> Result<pb::DeleteUserResponse, UserError> {
        self.service.delete(req.id).await?;
        Ok(pb::DeleteUserResponse {})
    }
}

impl Validate for pb::CreateUserRequest {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        domain::check_name(&self.name, true, &mut errors);
        domain::check_email(&self.email, true, &mut errors);
        errors.into_result()
    }
}

impl Validate for pb::UpdateUserRequest {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        domain::check_name(&self.name, false, &mut errors);
        domain::check_email(&self.email, false, &mut errors);
        if self.name.trim().is_empty() && self.email.is_empty() {
            errors.add("name", "set name or email");
        }
        errors.into_result()
    }
}

impl Validate for pb::ListUsersRequest {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if self.page_size as usize > MAX_PAGE {
            errors.add("page_size", format!("must be at most {MAX_PAGE}"));
        }
        errors.into_result()
    }
}

macro_rules! id_required {
    ($($t:ty),*) => {$(
        impl Validate for $t {
            fn validate(&self) -> Result<(), FieldErrors> {
                let mut errors = FieldErrors::new();
                if self.id == 0 {
                    errors.add("id", "must be set");
                }
                errors.into_result()
            }
        }
    )*};
}

id_required!(pb::GetUserRequest, pb::DeleteUserRequest);
