//! gRPC and HTTP/JSON for orders, from one `#[truss::grpc]` impl.

use std::sync::Arc;

use truss::validate::{FieldErrors, Validate};

use crate::domain::{NewOrder, Order, OrderError};
use crate::pb;
use crate::repository::OrderRepository;
use crate::service::OrderService;
use crate::users::UserDirectory;

/// The transport adapter over an [`OrderService`].
pub struct OrdersApi<R, U> {
    service: Arc<OrderService<R, U>>,
}

impl<R, U> OrdersApi<R, U> {
    /// Serves `service`.
    pub fn new(service: Arc<OrderService<R, U>>) -> Self {
        Self { service }
    }
}

fn wire(order: Order) -> pb::Order {
    pb::Order {
        id: order.id,
        user_id: order.user_id,
        user_name: order.user_name,
        item: order.item,
        quantity: order.quantity,
    }
}

#[truss::grpc(pb::orders_server::Orders)]
impl<R: OrderRepository, U: UserDirectory> OrdersApi<R, U> {
    #[http(post, "/v1/orders")]
    async fn create_order(&self, req: pb::CreateOrderRequest) -> Result<pb::Order, OrderError> {
        let new = NewOrder {
            user_id: req.user_id,
            item: req.item.trim().to_owned(),
            quantity: req.quantity,
        };
        self.service.create(new).await.map(wire)
    }

    #[http(get, "/v1/orders/{id}")]
    async fn get_order(&self, req: pb::GetOrderRequest) -> Result<pb::Order, OrderError> {
        self.service.get(req.id).await.map(wire)
    }
}

impl Validate for pb::CreateOrderRequest {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if self.user_id == 0 {
            errors.add("user_id", "must be set");
        }
        let item = self.item.trim();
        if item.is_empty() {
            errors.add("item", "must not be empty");
        } else if item.chars().count() > 200 {
            errors.add("item", "must be at most 200 characters");
        }
        if !(1..=1000).contains(&self.quantity) {
            errors.add("quantity", "must be between 1 and 1000");
        }
        errors.into_result()
    }
}

impl Validate for pb::GetOrderRequest {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if self.id == 0 {
            errors.add("id", "must be set");
        }
        errors.into_result()
    }
}
