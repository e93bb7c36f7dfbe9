//! Placing and reading orders.

use crate::domain::{NewOrder, Order, OrderError};
use crate::repository::OrderRepository;
use crate::users::UserDirectory;

/// Order operations.
#[derive(Debug)]
pub struct OrderService<R, U> {
    repo: R,
    users: U,
}

impl<R: OrderRepository, U: UserDirectory> OrderService<R, U> {
    /// A service over `repo`, checking users with `users`.
    pub fn new(repo: R, users: U) -> Self {
        Self { repo, users }
    }

    /// Places an order once the user is confirmed; on any failure nothing is stored.
    pub async fn create(&self, new: NewOrder) -> Result<Order, OrderError> {
        let user_name = self.users.name_of(new.user_id).await?;
        let order = self.repo.insert(new, user_name).await?;
        tracing::info!(order.id = order.id, user.id = order.user_id, "order placed");
        Ok(order)
    }

    /// The order with `id`.
    pub async fn get(&self, id: u64) -> Result<Order, OrderError> {
        self.repo.get(id).await
    }

    /// How many orders exist.
    pub async fn count(&self) -> Result<usize, OrderError> {
        self.repo.count().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::InMemoryOrders;

    struct Down;

    impl UserDirectory for Down {
        async fn name_of(&self, _: u64) -> Result<String, OrderError> {
            Err(OrderError::UserServiceUnavailable(
                "connection refused".into(),
            ))
        }
    }

    #[tokio::test]
    async fn nothing_is_written_when_the_user_cannot_be_checked() {
        let service = OrderService::new(InMemoryOrders::default(), Down);
        let new = NewOrder {
            user_id: 1,
            item: "tea".into(),
            quantity: 1,
        };
        assert!(matches!(
            service.create(new).await,
            Err(OrderError::UserServiceUnavailable(_))
        ));
        assert_eq!(service.count().await.unwrap(), 0);
    }
}
