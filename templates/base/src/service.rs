//! The use cases.

use crate::repository::ItemRepository;

pub use crate::repository::Item;

/// What can go wrong; each variant's HTTP status, gRPC code and reason.
#[derive(Debug, truss::Error)]
pub enum ItemError {
    /// No such item.
    #[error(code = 404, reason = "ITEM_NOT_FOUND", message = "item {0} not found")]
    NotFound(u64),
    /// The name is too long.
    #[error(code = 400, reason = "NAME_TOO_LONG", message = "names are at most {max} characters")]
    NameTooLong {
        /// The limit.
        max: usize,
    },
}

/// Item operations.
pub struct ItemService {
    repo: Box<dyn ItemRepository>,
    max_name_len: usize,
}

impl ItemService {
    /// A service over `repo`.
    pub fn new(repo: impl ItemRepository, max_name_len: usize) -> Self {
        Self {
            repo: Box::new(repo),
            max_name_len,
        }
    }

    /// Creates an item.
    pub async fn create(&self, name: String) -> Result<Item, ItemError> {
        let name = name.trim().to_owned();
        if name.chars().count() > self.max_name_len {
            return Err(ItemError::NameTooLong {
                max: self.max_name_len,
            });
        }
        Ok(self.repo.insert(name))
    }

    /// The item with `id`.
    pub async fn get(&self, id: u64) -> Result<Item, ItemError> {
        self.repo.get(id).ok_or(ItemError::NotFound(id))
    }
}
