use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::providers::{Format, Json, Toml, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::DeserializeOwned;

use super::error::{ConfigError, Problem};
use super::origin::{ConfigOrigin, Origin, Overlay, Shown};
use super::{Config, ReadSection, SECTIONS, Section};

const ENV_SOURCE: &str = "environment";

/// Builds a [`Config`] from defaults, a file and environment variables.
///
/// By default it reads the process's arguments and environment; tests and tools can hand it
/// their own with [`args`](Self::args) and [`env_vars`](Self::env_vars), so no global state
/// is touched.
#[derive(Debug, Clone)]
pub struct ConfigLoader {
    env_prefix: String,
    args: Option<Vec<OsString>>,
    env: Option<Vec<(String, String)>>,
    file: Option<PathBuf>,
    defaults: Option<&'static str>,
}

impl Default for ConfigLoader {
    fn default() -> Self {
        Self::new()
    }
}

/// How the config file was named, for error messages.
enum FileOrigin {
    Explicit,
    Flag,
    Env(String),
}

impl FileOrigin {
    fn describe(&self) -> String {
        match self {
            FileOrigin::Explicit => "the app builder".to_owned(),
            FileOrigin::Flag => "--config".to_owned(),
            FileOrigin::Env(var) => format!("environment variable {var}"),
        }
    }
}

impl ConfigLoader {
    /// A loader with prefix `TRUSS_` reading the process's arguments and environment.
    pub fn new() -> Self {
        Self {
            env_prefix: "TRUSS_".to_owned(),
            args: None,
            env: None,
            file: None,
            defaults: None,
        }
    }

    /// Embedded defaults in TOML (usually `include_str!` of the service's own config file),
    /// below the config file and the environment: the service runs with no file at all.
    ///
    /// ```
    /// use truss::config::{ConfigLoader, NoAppConfig};
    ///
    /// let config = ConfigLoader::new()
    ///     .args(["svc"])
    ///     .env_vars([("TRUSS_HTTP__ADDR", "127.0.0.1:8181")])
    ///     .defaults("[http]\naddr = \"0.0.0.0:8081\"\n[grpc]\naddr = \"0.0.0.0:9081\"\n")
    ///     .load::<NoAppConfig>()
    ///     .unwrap();
    /// assert_eq!(config.grpc.addr.port(), 9081); // embedded
    /// assert_eq!(config.http.addr.port(), 8181); // the environment wins
    /// ```
    pub fn defaults(mut self, toml: &'static str) -> Self {
        self.defaults = Some(toml);
        self
    }

    /// Sets the environment variable prefix (default `TRUSS_`); a trailing `_` is added when
    /// missing. The file path variable is the prefix followed by `CONFIG`.
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into().to_ascii_uppercase();
        if !prefix.ends_with('_') {
            prefix.push('_');
        }
        self.env_prefix = prefix;
        self
    }

    /// Uses these command-line arguments (the first is the program name) instead of the
    /// process's.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Uses these environment variables instead of the process's.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Reads this file, whatever `--config` and the environment say.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    fn env(&self) -> Vec<(String, String)> {
        match &self.env {
            Some(vars) => vars.clone(),
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    fn file_from_args(&self) -> Result<Option<PathBuf>, ConfigError> {
        let args: Vec<OsString> = match &self.args {
            Some(args) => args.clone(),
            None => std::env::args_os().collect(),
        };
        let mut iter = args.into_iter().skip(1);
        while let Some(arg) = iter.next() {
            let Some(text) = arg.to_str() else { continue };
            if text == "--config" || text == "-c" {
                return match iter.next() {
                    Some(path) => Ok(Some(PathBuf::from(path))),
                    None => Err(ConfigError::one(
                        "",
                        "--config",
                        "expected a file path after --config",
                    )),
                };
            }
            if let Some(path) = text.strip_prefix("--config=") {
                return Ok(Some(PathBuf::from(path)));
            }
        }
        Ok(None)
    }

    /// Loads and validates the whole configuration.
    ///
    /// The config remembers how it was loaded, so a running app can load it again when the
    /// file changes (see [`reload`](crate::reload)).
    pub fn load<T>(&self) -> Result<Config<T>, ConfigError>
    where
        T: DeserializeOwned + Section + Send + Sync + 'static,
    {
        let file = self.resolve_file()?;
        if let Some((path, origin)) = &file {
            check_file(path, origin)?;
        }
        let path = file.map(|(path, _)| path);
        let (mut config, _) = self.load_from::<T>(path.as_deref(), None)?;
        config.origin = ConfigOrigin(Some(Arc::new(Origin::new::<T>(self.clone(), path))));
        Ok(config)
    }

    /// The config file to read and how it was named.
    fn resolve_file(&self) -> Result<Option<(PathBuf, FileOrigin)>, ConfigError> {
        if let Some(path) = &self.file {
            return Ok(Some((path.clone(), FileOrigin::Explicit)));
        }
        if let Some(path) = self.file_from_args()? {
            return Ok(Some((path, FileOrigin::Flag)));
        }
        let file_var = format!("{}CONFIG", self.env_prefix);
        Ok(self
            .env()
            .into_iter()
            .find(|(k, _)| *k == file_var)
            .map(|(_, v)| (PathBuf::from(v), FileOrigin::Env(file_var))))
    }

    /// Loads defaults < `file` < `overlay` < environment, and what `/config` shows of it.
    pub(crate) fn load_from<T: DeserializeOwned + Section>(
        &self,
        file: Option<&Path>,
        overlay: Option<&Overlay>,
    ) -> Result<(Config<T>, Shown), ConfigError> {
        let mut figment = Figment::new();
        if let Some(defaults) = self.defaults {
            figment = figment.merge(Toml::string(defaults));
        }
        if let Some(path) = file {
            figment = merge_file(figment, path)?;
        }
        if let Some(overlay) = overlay {
            figment = figment.merge(overlay.clone());
        }
        figment = figment.merge(EnvProvider {
            prefix: self.env_prefix.clone(),
            file_var: format!("{}CONFIG", self.env_prefix),
            vars: self.env(),
        });
        let config = extract(&figment, &self.env_prefix)?;
        Ok((config, shown(&figment, &self.env_prefix)))
    }
}

/// A named config file that is missing is an error naming who named it.
fn check_file(path: &Path, origin: &FileOrigin) -> Result<(), ConfigError> {
    if path.is_file() {
        return Ok(());
    }
    Err(ConfigError::one(
        "",
        origin.describe(),
        format!(
            "config file {} does not exist or is not a file",
            path.display()
        ),
    ))
}

/// The values the sources set, with the source of each leaf.
fn shown(figment: &Figment, prefix: &str) -> Shown {
    let merged: serde_json::Value = figment.extract().unwrap_or_default();
    let mut sources = BTreeMap::new();
    leaves(&merged, &mut String::new(), &mut |key| {
        sources.insert(key.to_owned(), source_of(figment, key, prefix));
    });
    Shown {
        app: merged.get("app").cloned().unwrap_or_default(),
        sources,
    }
}

/// Appends `key` to the dotted key `path` (quoted when it holds `.` or `/`, as in
/// `timeout.routes."/v1/users"`); returns the length to truncate back to.
pub(crate) fn push_key(path: &mut String, key: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    if key.contains(['.', '/']) {
        path.push('"');
        path.push_str(key);
        path.push('"');
    } else {
        path.push_str(key);
    }
    len
}

/// Calls `found` with the dotted path of every leaf (segments holding `.` or `/` quoted).
fn leaves(value: &serde_json::Value, path: &mut String, found: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let len = push_key(path, key);
                leaves(child, path, found);
                path.truncate(len);
            }
        }
        _ => found(path),
    }
}

fn merge_file(figment: Figment, path: &Path) -> Result<Figment, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::one(
            "",
            format!("file {}", path.display()),
            "the config file is gone or is not a file",
        ));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    Ok(match ext.as_deref() {
        Some("toml") => figment.merge(Toml::file_exact(path)),
        Some("yaml" | "yml") => figment.merge(Yaml::file_exact(path)),
        Some("json") => figment.merge(Json::file_exact(path)),
        _ => {
            return Err(ConfigError::one(
                "",
                format!("file {}", path.display()),
                "unknown config format: the file name must end in .toml, .yaml, .yml or .json",
            ));
        }
    })
}

/// Reads sections from a figment, collecting every problem rather than stopping at the first.
struct Reader<'a> {
    figment: &'a Figment,
    top: &'a Dict,
    prefix: &'a str,
    found: Vec<Problem>,
}

impl ReadSection for Reader<'_> {
    fn read<S: DeserializeOwned + Default>(&mut self, key: &'static str) -> S {
        if !self.top.contains_key(key) {
            return S::default();
        }
        self.figment.extract_inner(key).unwrap_or_else(|e| {
            self.found.extend(section_problems(e, key, self.prefix));
            S::default()
        })
    }
}

impl Reader<'_> {
    fn unknown_sections(&mut self) {
        for key in self.top.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                self.found.push(Problem {
                    key: key.clone(),
                    source: source_of(self.figment, key, self.prefix),
                    message: format!("unknown section; expected one of {}", SECTIONS.join(", ")),
                });
            }
        }
    }

    /// The team's `[app]` section, validated; `None` (with the problem recorded) when unusable.
    fn app<T: DeserializeOwned + Section>(&mut self) -> Option<T> {
        let (figment, prefix) = (self.figment, self.prefix);
        let app: T = if self.top.contains_key("app") {
            figment
                .extract_inner("app")
                .map_err(|e| self.found.extend(section_problems(e, "app", prefix)))
                .ok()?
        } else {
            T::deserialize(&Value::from(Dict::new()))
                .map_err(|e| {
                    let e = e.with_path("app");
                    self.found.extend(section_problems(e, "app", prefix));
                })
                .ok()?
        };
        if let Err(invalid) = app.validate() {
            let key = invalid.within("app");
            self.found.push(Problem {
                source: source_of(figment, &key.field, prefix),
                key: key.field,
                message: key.message,
            });
        }
        Some(app)
    }
}

/// Decodes every section, collecting all problems rather than stopping at the first.
fn extract<T: DeserializeOwned + Section>(
    figment: &Figment,
    prefix: &str,
) -> Result<Config<T>, ConfigError> {
    let top: Dict = figment
        .extract()
        .map_err(|e| ConfigError::new(problems(e, prefix)))?;
    let mut reader = Reader {
        figment,
        top: &top,
        prefix,
        found: Vec::new(),
    };
    reader.unknown_sections();
    let framework = Config::read(&mut reader, ());
    let config = reader.app::<T>().map(|app| framework.with_app(app));
    match config {
        Some(config) if reader.found.is_empty() => {
            if let Err(invalid) = config.check_framework() {
                return Err(ConfigError::new(vec![Problem {
                    source: source_of(figment, &invalid.field, prefix),
                    key: invalid.field,
                    message: invalid.message,
                }]));
            }
            Ok(config)
        }
        _ => Err(ConfigError::new(reader.found)),
    }
}

/// [`problems`] for an error from `extract_inner(section)`, which appends the section to the
/// end of the error's path rather than the front.
fn section_problems(error: figment::Error, section: &str, prefix: &str) -> Vec<Problem> {
    let fixed = error.into_iter().map(|mut e| {
        if e.path.last().map(String::as_str) == Some(section) {
            e.path.pop();
            e.path.insert(0, section.to_owned());
        }
        e
    });
    fixed.flat_map(|e| problems(e, prefix)).collect()
}

/// Turns a figment error chain into problems that name key and source.
fn problems(error: figment::Error, prefix: &str) -> Vec<Problem> {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let message = match &e.kind {
                figment::error::Kind::UnknownField(_, expected) => {
                    format!("unknown key; expected one of: {}", expected.join(", "))
                }
                kind => kind.to_string(),
            };
            let source = match &e.metadata {
                Some(md) => describe_source(md, &key, prefix),
                None => "built-in defaults".to_owned(),
            };
            Problem {
                key,
                source,
                message,
            }
        })
        .collect()
}

/// Where the value at `key` came from. Keys that figment cannot address (quoted segments
/// holding dots or slashes) fall back to their nearest addressable parent.
fn source_of(figment: &Figment, key: &str, prefix: &str) -> String {
    let plain = key.replace('"', "");
    let mut probe = plain.as_str();
    loop {
        if let Some(md) = figment.find_metadata(probe) {
            return describe_source(md, &plain, prefix);
        }
        match probe.rfind('.') {
            Some(i) => probe = &probe[..i],
            None => return "built-in defaults".to_owned(),
        }
    }
}

fn describe_source(md: &Metadata, key: &str, prefix: &str) -> String {
    match &md.source {
        Some(Source::File(path)) => format!("file {}", path.display()),
        _ if md.name == ENV_SOURCE => {
            let var = key.replace('.', "__").to_ascii_uppercase();
            format!("environment variable {prefix}{var}")
        }
        _ => md.name.to_string(),
    }
}

/// Environment variables under a prefix, `__` separating levels. Values are read the way
/// figment reads them (`8080` is a number, `true` a bool, anything else a string).
struct EnvProvider {
    prefix: String,
    file_var: String,
    vars: Vec<(String, String)>,
}

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (name, raw) in &self.vars {
            if *name == self.file_var {
                continue;
            }
            let Some(rest) = name.strip_prefix(&self.prefix) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                continue;
            }
            let value = match raw.parse::<Value>() {
                Ok(v) => v,
                Err(never) => match never {},
            };
            insert(&mut root, &path, value);
        }
        let mut map = BTreeMap::new();
        map.insert(Profile::Default, root);
        Ok(map)
    }
}

pub(crate) fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let child = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if child.as_dict().is_none() {
                *child = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = child {
                insert(inner, rest, value);
            }
        }
    }
}
