//! The use cases: what the transports call. Depends on the domain and the repository trait.

use std::time::Duration;

use crate::domain::{NewUser, User, UserError, UserPatch};
use crate::repository::UserRepository;

/// The default and largest page sizes.
pub const DEFAULT_PAGE: usize = 20;
/// The largest page size.
pub const MAX_PAGE: usize = 100;

/// One page of users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The users, in id order.
    pub users: Vec<User>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
}

/// User operations over a repository.
#[derive(Debug)]
pub struct UserService<R> {
    repo: R,
    read_delay: Duration,
}

impl<R: UserRepository> UserService<R> {
    /// A service over `repo`; `read_delay` slows every read down (to try timeouts; zero
    /// normally).
    pub fn new(repo: R, read_delay: Duration) -> Self {
        Self { repo, read_delay }
    }

    /// Creates a user (input already validated by the transport).
    pub async fn create(&self, new: NewUser) -> Result<User, UserError> {
        let user = self.repo.insert(new).await?;
        tracing::info!(user.id = user.id, "user created");
        Ok(user)
    }

    /// The user with `id`.
    pub async fn get(&self, id: u64) -> Result<User, UserError> {
        if !self.read_delay.is_zero() {
            tokio::time::sleep(self.read_delay).await;
        }
        self.repo.get(id).await
    }

    /// A page of users; `token` is the previous page's `next`.
    pub async fn list(&self, size: usize, token: &str) -> Result<Page, UserError> {
        let size = if size == 0 {
            DEFAULT_PAGE
        } else {
            size.min(MAX_PAGE)
        };
        let after = if token.is_empty() {
            0
        } else {
            token
                .parse::<u64>()
                .map_err(|_| UserError::InvalidPageToken(token.to_owned()))?
        };
        // One more than asked tells whether another page follows.
        let mut users = self.repo.list(after, size + 1).await?;
        let next = if users.len() > size {
            users.truncate(size);
            users.last().map(|u| u.id.to_string())
        } else {
            None
        };
        Ok(Page { users, next })
    }

    /// Updates the fields set in `patch`.
    pub async fn update(&self, id: u64, patch: UserPatch) -> Result<User, UserError> {
        self.repo.update(id, patch).await
    }

    /// Deletes a user.
    pub async fn delete(&self, id: u64) -> Result<(), UserError> {
        self.repo.delete(id).await?;
        tracing::info!(user.id = id, "user deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::InMemoryUsers;

    fn new(name: &str) -> NewUser {
        NewUser {
            name: name.to_owned(),
            email: format!("{name}@example.com"),
        }
    }

    #[tokio::test]
    async fn pages_through_every_user_once() {
        let service = UserService::new(InMemoryUsers::default(), Duration::ZERO);
        for i in 0..5 {
            service.create(new(&format!("u{i}"))).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = service.list(2, &token).await.unwrap();
            seen.extend(page.users.iter().map(|u| u.id));
            match page.next {
                Some(next) => token = next,
                None => break,
            }
        }
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        assert!(matches!(
            service.list(2, "x").await,
            Err(UserError::InvalidPageToken(_))
        ));
    }

    #[tokio::test]
    async fn emails_stay_unique() {
        let service = UserService::new(InMemoryUsers::default(), Duration::ZERO);
        service.create(new("ada")).await.unwrap();
        let b = service.create(new("bob")).await.unwrap();
        assert!(matches!(
            service.create(new("ada")).await,
            Err(UserError::EmailTaken { .. })
        ));
        let patch = UserPatch {
            email: Some("ada@example.com".into()),
            ..UserPatch::default()
        };
        assert!(matches!(
            service.update(b.id, patch).await,
            Err(UserError::EmailTaken { .. })
        ));
        assert!(matches!(
            service.delete(9).await,
            Err(UserError::NotFound(9))
        ));
    }
}
