//! HTTP handlers: the macro writes decoding, validation and error mapping.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use truss::JsonSchema;
use truss::validate::{FieldErrors, Validate};

use crate::service::{Item, ItemError, ItemService};

/// The shared state handlers receive.
pub type State = Arc<ItemService>;

/// `POST /v1/items` body. `JsonSchema`: `/openapi.json` describes it.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateItem {
    /// The item's name.
    pub name: String,
}

impl Validate for CreateItem {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if self.name.trim().is_empty() {
            errors.add("name", "must not be empty");
        }
        errors.into_result()
    }
}

/// An item on the wire.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ItemBody {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

impl From<Item> for ItemBody {
    fn from(item: Item) -> Self {
        Self {
            id: item.id,
            name: item.name,
        }
    }
}

/// Creates an item.
#[truss::route(post, "/v1/items", status = 201, timeout = "2s")]
pub async fn create_item(
    #[state] items: State,
    #[body] req: CreateItem,
) -> Result<ItemBody, ItemError> {
    items.create(req.name).await.map(Into::into)
}

/// One item.
#[truss::route(get, "/v1/items/{id}")]
pub async fn get_item(#[state] items: State, #[path] id: u64) -> Result<ItemBody, ItemError> {
    items.get(id).await.map(Into::into)
}

/// Every route of the service.
pub fn routes(items: State) -> truss::deps::axum::Router {
    truss::routes![create_item, get_item].with_state(items)
}
