//! Reads through a cache: [`CachedUsers`] keeps users in Redis (and the optional in-process
//! L1) in front of another repository when `[redis]` is configured, and passes straight
//! through when it is not.

use truss::redis::{Cache, RedisError};

use super::UserRepository;
use crate::domain::{NewUser, User, UserError, UserPatch};

/// A repository whose `get` goes through a [`Cache`]: one load per id however many readers
/// miss together, "not found" remembered for `redis.cache.negative_ttl`, and a Redis outage
/// that only bypasses the cache. Writes go to the inner repository first, then remove the id
/// from the cache (and, through pub/sub, from every instance's L1).
///
/// If Redis is down at that moment, the old value stays in Redis until `redis.cache.ttl` and
/// in other instances' L1 until `redis.cache.l1.ttl`: that is the staleness window.
#[derive(Debug)]
pub struct CachedUsers<R> {
    inner: R,
    cache: Option<Cache<u64, User>>,
}

impl<R: UserRepository> CachedUsers<R> {
    /// `inner` behind `cache`; with `None`, every call goes to `inner`.
    pub fn new(inner: R, cache: Option<Cache<u64, User>>) -> Self {
        Self { inner, cache }
    }

    /// The repository behind the cache.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Drops `id` from the cache after a write. A failure is logged, not returned: the write
    /// itself succeeded, and the entry expires by its TTL.
    async fn forget(&self, id: u64) {
        if let Some(cache) = &self.cache
            && let Err(e) = cache.delete(&id).await
        {
            tracing::warn!(user = id, error = %e, "could not drop a changed user from the cache");
        }
    }
}

impl From<RedisError> for UserError {
    fn from(e: RedisError) -> Self {
        UserError::Storage(e.into())
    }
}

impl<R: UserRepository> UserRepository for CachedUsers<R> {
    async fn insert(&self, new: NewUser) -> Result<User, UserError> {
        let user = self.inner.insert(new).await?;
        // A read of this id before it existed may have left a "not found" entry.
        self.forget(user.id).await;
        Ok(user)
    }

    async fn get(&self, id: u64) -> Result<User, UserError> {
        let Some(cache) = &self.cache else {
            return self.inner.get(id).await;
        };
        let found = cache
            .get_or_load(&id, || async move {
                match self.inner.get(id).await {
                    Ok(user) => Ok(Some(user)),
                    Err(UserError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        found.ok_or(UserError::NotFound(id))
    }

    async fn list(&self, after: u64, limit: usize) -> Result<Vec<User>, UserError> {
        self.inner.list(after, limit).await
    }

    async fn update(&self, id: u64, patch: UserPatch) -> Result<User, UserError> {
        let user = self.inner.update(id, patch).await?;
        self.forget(id).await;
        Ok(user)
    }

    async fn delete(&self, id: u64) -> Result<(), UserError> {
        self.inner.delete(id).await?;
        self.forget(id).await;
        Ok(())
    }
}
