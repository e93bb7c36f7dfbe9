//! Storage. Replace `InMemoryItems` with a database-backed implementation.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Assigned on insert.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// Where items live.
pub trait ItemRepository: Send + Sync + 'static {
    /// Stores a new item.
    fn insert(&self, name: String) -> Item;
    /// The item with `id`.
    fn get(&self, id: u64) -> Option<Item>;
}

/// Items in memory.
#[derive(Debug, Default)]
pub struct InMemoryItems {
    items: Mutex<BTreeMap<u64, Item>>,
}

impl ItemRepository for InMemoryItems {
    fn insert(&self, name: String) -> Item {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let item = Item {
            id: items.len() as u64 + 1,
            name,
        };
        items.insert(item.id, item.clone());
        item
    }

    fn get(&self, id: u64) -> Option<Item> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items.get(&id).cloned()
    }
}
