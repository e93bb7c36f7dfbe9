use std::fmt;

/// Why configuration could not be loaded. Each problem names the key path and its source.
///
/// ```text
/// invalid configuration: key `http.addr` from file /etc/hello.toml: invalid socket address syntax
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<Problem>,
}

/// One problem: a key path (possibly empty for a whole file), the source, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) key: String,
    pub(crate) source: String,
    pub(crate) message: String,
}

impl ConfigError {
    pub(crate) fn new(problems: Vec<Problem>) -> Self {
        Self { problems }
    }

    pub(crate) fn one(
        key: impl Into<String>,
        source: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(vec![Problem {
            key: key.into(),
            source: source.into(),
            message: message.into(),
        }])
    }

    /// The key paths the problems are about, e.g. `["http.addr"]`.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.problems.iter().map(|p| p.key.as_str())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(
                f,
                "key `{}` from {}: {}",
                self.key, self.source, self.message
            )
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}
