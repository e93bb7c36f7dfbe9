//! Where orders are kept: the [`OrderRepository`] trait; [`SqlOrders`] (SQLite by default,
//! PostgreSQL by config) serves, [`InMemoryOrders`] is for unit tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use crate::domain::{NewOrder, Order, OrderError};

mod sql;

pub use sql::{ORDER_CREATED, SqlOrders, migrator};

/// Storage of orders.
pub trait OrderRepository: Send + Sync + 'static {
    /// Stores an order (all or nothing) with the next id.
    fn insert(
        &self,
        order: NewOrder,
        user_name: String,
    ) -> impl Future<Output = Result<Order, OrderError>> + Send;
    /// The order with `id`.
    fn get(&self, id: u64) -> impl Future<Output = Result<Order, OrderError>> + Send;
    /// How many orders are stored.
    fn count(&self) -> impl Future<Output = Result<usize, OrderError>> + Send;
}

/// Orders in a map behind a mutex.
#[derive(Debug, Default)]
pub struct InMemoryOrders {
    state: Mutex<(BTreeMap<u64, Order>, u64)>,
}

impl OrderRepository for InMemoryOrders {
    async fn insert(&self, new: NewOrder, user_name: String) -> Result<Order, OrderError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        let order = Order {
            id: state.1,
            user_id: new.user_id,
            user_name,
            item: new.item,
            quantity: new.quantity,
        };
        state.0.insert(order.id, order.clone());
        Ok(order)
    }

    async fn get(&self, id: u64) -> Result<Order, OrderError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.get(&id).cloned().ok_or(OrderError::NotFound(id))
    }

    async fn count(&self) -> Result<usize, OrderError> {
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()).0.len())
    }
}
