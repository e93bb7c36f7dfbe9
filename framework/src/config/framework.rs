//! The one list of framework sections. Loading, validation, the list of accepted top-level
//! keys and the app builder all iterate over it, so adding a section is its own module plus
//! one line here (see "Adding a config section" in the crate docs).

use serde::de::DeserializeOwned;

use super::sections::{
    AdminConfig, GrpcConfig, HttpConfig, LogConfig, NoAppConfig, ShutdownConfig,
};
use crate::auth::AuthConfig;
use crate::observe::otel::TraceConfig;
use crate::queue::{ConsumersConfig, ProducersConfig};
use crate::redis::RedisConfig;
use crate::registry::RegistryConfig;
use crate::reload::ReloadConfig;
use crate::resilience::AdmissionConfig;
use crate::resilience::breaker::BreakerConfig;
use crate::resilience::deadline::TimeoutConfig;
use crate::resilience::retry::RetryConfig;
use crate::section::{Section, ValidationError};
use crate::sql::DatabaseConfig;

/// Reads one section by its key; the loader implements it over figment, collecting problems.
pub(crate) trait ReadSection {
    /// The section at `key`, or its default (recording why) when it cannot be read.
    fn read<S: DeserializeOwned + Default>(&mut self, key: &'static str) -> S;
}

/// Declares [`Config`] from the list of `key: Type` sections.
macro_rules! framework_sections {
    ($( $(#[$doc:meta])* $key:ident: $ty:ty, )*) => {
        /// The whole configuration of a truss app: the framework's sections and the team's
        /// `app`.
        #[derive(Debug, Clone, Default)]
        pub struct Config<T = NoAppConfig> {
            $( $(#[$doc])* pub $key: $ty, )*
            /// `[app]`: the team's own section.
            pub app: T,
            /// How this config was loaded, for live reload (set by the loader; empty when
            /// built in code).
            pub origin: super::origin::ConfigOrigin,
        }

        /// Every accepted top-level key, the framework's in order, then `app`.
        pub(crate) const SECTIONS: &[&str] = &[$(stringify!($key),)* "app"];

        impl<T> Config<T> {
            /// Checks the framework sections, naming the failing key (`admission.shed.…`).
            /// The loader runs this (naming each value's source); the app runs it again at
            /// start for configs built in code.
            pub fn check_framework(&self) -> Result<(), ValidationError> {
                $( Section::validate(&self.$key).map_err(|e| e.within(stringify!($key)))?; )*
                Ok(())
            }

            /// The framework sections alone, without the team's `app`.
            pub fn framework(&self) -> Config<NoAppConfig> {
                Config {
                    $( $key: self.$key.clone(), )*
                    app: NoAppConfig {},
                    origin: self.origin.clone(),
                }
            }

            /// The same framework sections next to another `app` section.
            pub(crate) fn with_app<U>(self, app: U) -> Config<U> {
                Config { $( $key: self.$key, )* app, origin: self.origin }
            }

            /// The framework sections as JSON, one member per section (for diffs and
            /// `/config`).
            pub(crate) fn sections_json(&self) -> serde_json::Value {
                let mut map = serde_json::Map::new();
                $( map.insert(
                    stringify!($key).to_owned(),
                    serde_json::to_value(&self.$key).unwrap_or_default(),
                ); )*
                serde_json::Value::Object(map)
            }

            /// The framework sections and the team's `app`, apart.
            pub(crate) fn split(self) -> (Config<NoAppConfig>, T) {
                let framework = Config {
                    $( $key: self.$key, )*
                    app: NoAppConfig {},
                    origin: self.origin,
                };
                (framework, self.app)
            }

            /// Reads every framework section through `reader`, next to an `app` section.
            pub(crate) fn read(reader: &mut impl ReadSection, app: T) -> Self {
                Config { $( $key: reader.read(stringify!($key)), )* app, origin: Default::default() }
            }
        }
    };
}

framework_sections! {
    /// `[http]`
    http: HttpConfig,
    /// `[grpc]`
    grpc: GrpcConfig,
    /// `[admin]`
    admin: AdminConfig,
    /// `[shutdown]`
    shutdown: ShutdownConfig,
    /// `[log]`
    log: LogConfig,
    /// `[admission]`: in-flight limit, rate limits, load shedding.
    admission: AdmissionConfig,
    /// `[timeout]`: request timeouts and deadline propagation.
    timeout: TimeoutConfig,
    /// `[breaker]`: circuit breakers.
    breaker: BreakerConfig,
    /// `[retry]`: client retries.
    retry: RetryConfig,
    /// `[trace]`: trace export.
    trace: TraceConfig,
    /// `[registry]`: registration and discovery.
    registry: RegistryConfig,
    /// `[auth]`: token verification, route policies, this service's own tokens.
    auth: AuthConfig,
    /// `[database]`: the SQL pool (feature `sql`).
    database: DatabaseConfig,
    /// `[redis]`: the Redis client and cache defaults (feature `redis`).
    redis: RedisConfig,
    /// `[reload]`: live reload of this config (file watch, SIGHUP, etcd source).
    reload: ReloadConfig,
    /// `[consumers."<subscription>"]`: message consumers.
    consumers: ConsumersConfig,
    /// `[producers."<subject>"]`: where producers publish.
    producers: ProducersConfig,
}
