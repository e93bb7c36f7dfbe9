//! The gRPC service (and the same methods over HTTP/JSON): the macro writes the tonic trait
//! impl, validation and error mapping.

use std::sync::Arc;

use truss::validate::{FieldErrors, Validate};

use crate::pb;
use crate::service::{Item, ItemError, ItemService};

/// The transport adapter over the [`ItemService`].
pub struct Api {
    items: Arc<ItemService>,
}

impl Api {
    /// Serves `items`.
    pub fn new(items: Arc<ItemService>) -> Self {
        Self { items }
    }
}

fn wire(item: Item) -> pb::Item {
    pb::Item {
        id: item.id,
        name: item.name,
    }
}

#[truss::grpc(pb::{{name_snake}}_server::{{Name}})]
impl Api {
    #[http(post, "/v1/items")]
    async fn create_item(&self, req: pb::CreateItemRequest) -> Result<pb::Item, ItemError> {
        self.items.create(req.name).await.map(wire)
    }

    #[http(get, "/v1/items/{id}")]
    async fn get_item(&self, req: pb::GetItemRequest) -> Result<pb::Item, ItemError> {
        self.items.get(req.id).await.map(wire)
    }
}

impl Validate for pb::CreateItemRequest {
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if self.name.trim().is_empty() {
            errors.add("name", "must not be empty");
        }
        errors.into_result()
    }
}
