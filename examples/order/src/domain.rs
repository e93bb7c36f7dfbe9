//! Orders and what can go wrong with them.

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Assigned by the repository.
    pub id: u64,
    /// Who ordered.
    pub user_id: u64,
    /// Their name, as the user service had it when the order was placed.
    pub user_name: String,
    /// What.
    pub item: String,
    /// How many (1-1000).
    pub quantity: u32,
}

/// An order to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Who orders.
    pub user_id: u64,
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// The order service's errors.
#[derive(Debug, truss::Error)]
pub enum OrderError {
    /// No order with this id.
    #[error(
        code = 404,
        reason = "ORDER_NOT_FOUND",
        message = "order {0} not found"
    )]
    NotFound(u64),
    /// The user service says this user does not exist.
    #[error(
        code = 400,
        reason = "UNKNOWN_USER",
        message = "user {0} does not exist"
    )]
    UnknownUser(u64),
    /// The user service could not be reached, or refused the call; nothing was written.
    #[error(
        code = 503,
        reason = "USER_SERVICE_UNAVAILABLE",
        message = "cannot check the user right now, no order was placed: {0}"
    )]
    UserServiceUnavailable(String),
    /// The user service did not answer within the deadline; nothing was written.
    #[error(
        code = 504,
        reason = "USER_SERVICE_TIMEOUT",
        message = "the user service did not answer in time (down or slow), no order was placed"
    )]
    UserServiceTimeout,
    /// The store failed (down: 503, deadline: 504, ...); its error is passed on as it came.
    #[error(transparent)]
    Storage(truss::Error),
}
