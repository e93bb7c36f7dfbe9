//! The user service, as the order service sees it: a [`UserDirectory`], implemented over
//! gRPC by [`GrpcUsers`] (discovery, balancing, deadline, budgeted retries, breaker).

use std::future::Future;
use std::time::Duration;

use truss::client::GrpcChannel;
use truss::resilience::deadline::Deadline;

use crate::domain::OrderError;
use crate::userpb::GetUserRequest;
use crate::userpb::users_client::UsersClient;

/// Looks users up.
pub trait UserDirectory: Send + Sync + 'static {
    /// The user's name, or why it cannot be had.
    fn name_of(&self, user_id: u64) -> impl Future<Output = Result<String, OrderError>> + Send;
}

/// [`UserDirectory`] over the user service's gRPC API.
#[derive(Clone)]
pub struct GrpcUsers {
    client: UsersClient<GrpcChannel>,
    timeout: Duration,
}

impl GrpcUsers {
    /// Calls through `channel` (from `truss::client::grpc_client`), giving each lookup at
    /// most `timeout` (less when the caller's own deadline is sooner).
    pub fn new(channel: GrpcChannel, timeout: Duration) -> Self {
        Self {
            client: UsersClient::new(channel),
            timeout,
        }
    }
}

impl UserDirectory for GrpcUsers {
    async fn name_of(&self, user_id: u64) -> Result<String, OrderError> {
        let own = Deadline::after(self.timeout);
        let deadline = Deadline::current().map_or(own, |caller| caller.min(own));
        let mut client = self.client.clone();
        let call = client.get_user(GetUserRequest { id: user_id });
        match deadline.scope(call).await {
            Ok(reply) => Ok(reply.into_inner().name),
            Err(status) => {
                let err = truss::Error::from(status);
                Err(if err.is("USER_NOT_FOUND") {
                    OrderError::UnknownUser(user_id)
                } else if matches!(err.code(), 499 | 504) || deadline.is_expired() {
                    // The deadline passed, whichever layer noticed first (tonic reports the
                    // grpc-timeout it enforces, a few ms early by the margin, as CANCELLED).
                    OrderError::UserServiceTimeout
                } else {
                    OrderError::UserServiceUnavailable(err.message().to_owned())
                })
            }
        }
    }
}
