//! Where users are kept. The service depends on the [`UserRepository`] trait: [`SqlUsers`]
//! (SQLite by default, PostgreSQL by config) serves, behind [`CachedUsers`] (Redis, when
//! configured); [`InMemoryUsers`] is for unit tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use crate::domain::{NewUser, User, UserError, UserPatch};

mod cached;
mod sql;

pub use cached::CachedUsers;
pub use sql::{SqlUsers, migrator};

/// Storage of users. Email addresses are unique, as a database index would make them.
pub trait UserRepository: Send + Sync + 'static {
    /// Stores a new user with the next id.
    fn insert(&self, user: NewUser) -> impl Future<Output = Result<User, UserError>> + Send;
    /// The user with `id`.
    fn get(&self, id: u64) -> impl Future<Output = Result<User, UserError>> + Send;
    /// Up to `limit` users with ids above `after`, in id order.
    fn list(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<User>, UserError>> + Send;
    /// Applies `patch` to the user with `id`.
    fn update(
        &self,
        id: u64,
        patch: UserPatch,
    ) -> impl Future<Output = Result<User, UserError>> + Send;
    /// Removes the user with `id`.
    fn delete(&self, id: u64) -> impl Future<Output = Result<(), UserError>> + Send;
}

/// Users in a map behind a mutex.
#[derive(Debug, Default)]
pub struct InMemoryUsers {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    users: BTreeMap<u64, User>,
    last_id: u64,
}

impl InMemoryUsers {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock cannot leave a half-written user (every change is
        // one map operation), so a poisoned lock is still usable.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }
}

fn email_taken(state: &State, email: &str, except: Option<u64>) -> bool {
    state
        .users
        .values()
        .any(|u| u.email.eq_ignore_ascii_case(email) && Some(u.id) != except)
}

impl UserRepository for InMemoryUsers {
    async fn insert(&self, new: NewUser) -> Result<User, UserError> {
        self.with(|state| {
            if email_taken(state, &new.email, None) {
                return Err(UserError::EmailTaken { email: new.email });
            }
            state.last_id += 1;
            let user = User {
                id: state.last_id,
                name: new.name,
                email: new.email,
            };
            state.users.insert(user.id, user.clone());
            Ok(user)
        })
    }

    async fn get(&self, id: u64) -> Result<User, UserError> {
        self.with(|state| state.users.get(&id).cloned().ok_or(UserError::NotFound(id)))
    }

    async fn list(&self, after: u64, limit: usize) -> Result<Vec<User>, UserError> {
        Ok(self.with(|state| {
            state
                .users
                .range(after.saturating_add(1)..)
                .take(limit)
                .map(|(_, u)| u.clone())
                .collect()
        }))
    }

    async fn update(&self, id: u64, patch: UserPatch) -> Result<User, UserError> {
        self.with(|state| {
            if let Some(email) = &patch.email
                && email_taken(state, email, Some(id))
            {
                return Err(UserError::EmailTaken {
                    email: email.clone(),
                });
            }
            let user = state.users.get_mut(&id).ok_or(UserError::NotFound(id))?;
            if let Some(name) = patch.name {
                user.name = name;
            }
            if let Some(email) = patch.email {
                user.email = email;
            }
            Ok(user.clone())
        })
    }

    async fn delete(&self, id: u64) -> Result<(), UserError> {
        self.with(|state| {
            state
                .users
                .remove(&id)
                .map(|_| ())
                .ok_or(UserError::NotFound(id))
        })
    }
}
