//! The use cases.

use crate::repository::{ItemRepository, SqlItems};

pub use crate::repository::Item;

/// What can go wrong; each variant's HTTP status, gRPC code and reason.
#[derive(Debug, truss::Error)]
pub enum ItemError {
    /// No such item.
    #[error(code = 404, reason = "ITEM_NOT_FOUND", message = "item {0} not found")]
    NotFound(u64),
    /// The name is too long.
    #[error(
        code = 400,
        reason = "NAME_TOO_LONG",
        message = "names are at most {max} characters"
    )]
    NameTooLong {
        /// The limit.
        max: usize,
    },
    /// The storage failed (the database is down: 503, past the deadline: 504, ...); its error
    /// is passed on as it came.
    #[error(transparent)]
    Storage(truss::Error),
}

/// Item operations over a repository: [`SqlItems`] when serving, any other
/// [`ItemRepository`] in tests.
pub struct ItemService<R = SqlItems> {
    repo: R,
    max_name_len: usize,
}

impl<R: ItemRepository> ItemService<R> {
    /// A service over `repo`.
    pub fn new(repo: R, max_name_len: usize) -> Self {
        Self { repo, max_name_len }
    }

    /// Creates an item.
    pub async fn create(&self, name: String) -> Result<Item, ItemError> {
        let name = name.trim().to_owned();
        if name.chars().count() > self.max_name_len {
            return Err(ItemError::NameTooLong {
                max: self.max_name_len,
            });
        }
        Ok(self.repo.insert(name).await?)
    }

    /// The item with `id`.
    pub async fn get(&self, id: u64) -> Result<Item, ItemError> {
        self.repo.get(id).await?.ok_or(ItemError::NotFound(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::InMemoryItems;

    #[tokio::test]
    async fn creates_reads_and_refuses_long_names() {
        let items = ItemService::new(InMemoryItems::default(), 5);
        let item = items.create(" first ".to_owned()).await.unwrap();
        assert_eq!(item.name, "first");
        assert_eq!(items.get(item.id).await.unwrap(), item);
        assert!(matches!(items.get(99).await, Err(ItemError::NotFound(99))));
        let long = items.create("sixsix".to_owned()).await;
        assert!(matches!(long, Err(ItemError::NameTooLong { max: 5 })));
    }
}
