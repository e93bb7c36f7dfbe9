//! Where a loaded config came from, kept so the running app can load it again, plus the
//! overlay source (etcd) that sits between the file and the environment.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use figment::value::{Dict, Map};
use figment::{Metadata, Profile, Provider};
use serde::de::DeserializeOwned;

use super::{Config, ConfigError, ConfigLoader, Live, NoAppConfig, Section};

/// The team's `[app]` value of one load, type-erased.
pub(crate) type AnyApp = Box<dyn Any + Send + Sync>;

type LoadFn = dyn Fn(Option<&Overlay>) -> Result<Loaded, ConfigError> + Send + Sync;
type Subscriber = Box<dyn Fn(&(dyn Any + Send + Sync)) + Send + Sync>;
/// Told the framework sections in force after a reload; `false` once it no longer cares.
type Follower = Box<dyn Fn(&Config<NoAppConfig>) -> bool + Send + Sync>;

/// How to load the same config again, and who wants the new `[app]` value.
pub(crate) struct Origin {
    load: Box<LoadFn>,
    /// The config file, if one was read: the file a running app watches.
    pub(crate) file: Option<PathBuf>,
    /// A hash of the file's bytes when it was first loaded: a change made before the app
    /// starts watching is still a change.
    pub(crate) file_hash: Option<u64>,
    subscribers: Mutex<Vec<Subscriber>>,
    followers: Mutex<Vec<Follower>>,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin").field("file", &self.file).finish()
    }
}

/// One load: the framework sections, the team's `[app]`, and what `/config` shows.
pub(crate) struct Loaded {
    pub(crate) config: Config<NoAppConfig>,
    pub(crate) app: AnyApp,
    pub(crate) shown: Shown,
}

/// The merged values as the sources gave them (before defaults) and where each came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shown {
    /// The `[app]` section as written (the team's type need not be `Serialize`).
    pub(crate) app: serde_json::Value,
    /// Every key a source set, with the source: `file /etc/user.toml`, `etcd key ...`,
    /// `environment variable TRUSS_...`.
    pub(crate) sources: BTreeMap<String, String>,
}

impl Origin {
    /// An origin reloading through `loader` from `file`, as `[app]` type `T`.
    pub(crate) fn new<T>(loader: ConfigLoader, file: Option<PathBuf>) -> Self
    where
        T: DeserializeOwned + Section + Send + Sync + 'static,
    {
        let path = file.clone();
        let file_hash = file
            .as_deref()
            .and_then(|f| std::fs::read(f).ok())
            .map(|bytes| content_hash(&bytes));
        let load = move |overlay: Option<&Overlay>| {
            let (config, shown) = loader.load_from::<T>(path.as_deref(), overlay)?;
            let (config, app) = config.split();
            Ok(Loaded {
                config,
                app: Box::new(app),
                shown,
            })
        };
        Self {
            load: Box::new(load),
            file,
            file_hash,
            subscribers: Mutex::new(Vec::new()),
            followers: Mutex::new(Vec::new()),
        }
    }

    /// Loads again from the same sources, with `overlay` above the file.
    pub(crate) fn load(&self, overlay: Option<&Overlay>) -> Result<Loaded, ConfigError> {
        (self.load)(overlay)
    }

    /// Keeps `live` up to date with every `[app]` value [`publish`](Self::publish)ed.
    pub(crate) fn subscribe<T: Clone + Send + Sync + 'static>(&self, live: Live<T>) {
        let update = move |app: &(dyn Any + Send + Sync)| {
            if let Some(app) = app.downcast_ref::<T>() {
                live.set(app.clone());
            }
        };
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(update));
    }

    /// Calls `follow` with the framework sections after every applied reload, until it
    /// returns `false` (its owner is gone): how clients keep their retry policy current.
    pub(crate) fn follow(
        &self,
        follow: impl Fn(&Config<NoAppConfig>) -> bool + Send + Sync + 'static,
    ) {
        self.followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(follow));
    }

    /// Hands the sections in force to every follower, forgetting those that are gone.
    pub(crate) fn publish_config(&self, config: &Config<NoAppConfig>) {
        self.followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|follow| follow(config));
    }

    /// Hands a new `[app]` value to every [`Live`] handle.
    pub(crate) fn publish(&self, app: &AnyApp) {
        let subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for update in subscribers.iter() {
            update(app.as_ref());
        }
    }
}

/// The hash the file watch compares.
pub(crate) fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

impl<T: Clone + Send + Sync + 'static> Config<T> {
    /// A [`Live`] handle on the `[app]` section: the running app replaces its value on every
    /// valid reload (see [`reload`](crate::reload)). Handles made from a config built in code
    /// (not loaded) never change.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use truss::config::{ConfigLoader, Section};
    ///
    /// #[derive(Debug, Clone, Default, Deserialize)]
    /// #[serde(deny_unknown_fields, default)]
    /// struct Hello { greeting: String }
    /// impl Section for Hello {}
    ///
    /// let config = ConfigLoader::new()
    ///     .args(["hello"])
    ///     .env_vars([("TRUSS_APP__GREETING", "Hi")])
    ///     .load::<Hello>()
    ///     .unwrap();
    /// let live = config.live_app();
    /// assert_eq!(live.get().greeting, "Hi");
    /// ```
    pub fn live_app(&self) -> Live<T> {
        let live = Live::new(self.app.clone());
        if let Some(origin) = &self.origin.0 {
            origin.subscribe(live.clone());
        }
        live
    }
}

/// Values from a source layered above the config file and below the environment: the etcd
/// source of a running app.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Overlay {
    /// How errors name the source, e.g. `etcd key /config/user`.
    pub(crate) name: String,
    pub(crate) values: Dict,
}

impl Provider for Overlay {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.values.clone())]))
    }
}

/// How a [`Config`] was loaded, so a running app can load it again (see
/// [`reload`](crate::reload)). Set by [`ConfigLoader::load`]; a config built in code has
/// none ([`Default`]) and is never reloaded. Opaque: only the framework reads it.
#[derive(Debug, Clone, Default)]
pub struct ConfigOrigin(pub(crate) Option<Arc<Origin>>);
