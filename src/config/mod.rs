//! Configuration: `raw` is the YAML as written, `compile` turns it into the runtime `Policy`,
//! `defaults` holds every default. All config errors are made here, and each names the file,
//! line, column and key path.

pub mod compile;
pub mod defaults;
pub(crate) mod locate;
pub mod raw;
#[cfg(test)]
mod tests;

pub use compile::{
    strip_sieve, KeyPlan, Limits, Policy, Protocol, ServerSettings, TracingSettings, Upstream,
    UpstreamTls,
};
use std::path::Path;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is part of the message and not a `source`, so that printing the error with
    /// its chain does not repeat it.
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    /// `file:line:column: key.path: message`.
    #[error("{file}:{line}:{column}: {path}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        /// `routes[2].scopes`, or `-` for the document itself.
        path: String,
        message: String,
    },
}

/// How a config file is compiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Compile without the world around the gateway, for `check`, `explain` and `test`:
    /// upstream host names are not resolved (IP literals still are), a missing
    /// `hmac_secret_env` variable or `jwks_file` is not an error. What was skipped is listed
    /// in `Compiled::skipped`. Off for `run`.
    pub offline: bool,
}

/// Something an offline compile did not check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Key path (`upstreams.app.url`).
    pub path: String,
    /// 1-based line of the key in the file.
    pub line: usize,
    pub message: String,
}

/// A compiled config with what compiling it skipped.
#[derive(Debug)]
pub struct Compiled {
    pub policy: Policy,
    /// Empty unless `Options::offline`.
    pub skipped: Vec<Skipped>,
}

/// A config file's text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        file: path.display().to_string(),
        error,
    })
}

/// Compile `text`, read from `path`: errors name the file, relative paths (`jwks_file`,
/// certificate and CA files) are taken from its directory.
pub fn compile_file(path: &Path, text: &str, options: Options) -> Result<Compiled, ConfigError> {
    let base = path.parent().unwrap_or(Path::new("."));
    from_str_with(text, &path.display().to_string(), base, options)
}

/// Compile config text. `file` names it in errors; relative `jwks_file` paths are taken from
/// `base`.
pub fn from_str(text: &str, file: &str, base: &Path) -> Result<Policy, ConfigError> {
    from_str_with(text, file, base, Options::default()).map(|c| c.policy)
}

/// `from_str` with options.
pub fn from_str_with(
    text: &str,
    file: &str,
    base: &Path,
    options: Options,
) -> Result<Compiled, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: raw::RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = strip_location(&inner.to_string());
        let reported = inner.location().map(|l| (l.line(), l.column()));
        // serde_yaml_ng places an error of our own types (a bad duration, scopes written as a
        // string) at the start of the enclosing mapping: the value itself is where the mistake
        // is. An unknown key is the key.
        let position = if message.starts_with("unknown field") {
            None
        } else {
            position(text, &path)
        };
        let (line, column) = match (position, reported, locate::locate_exact(text, &path)) {
            (Some(at), _, _) => at,
            (None, Some(r), Some(key)) if r < key => key,
            (None, Some(r), _) => r,
            (None, None, _) => locate::locate(text, &path).unwrap_or((1, 1)),
        };
        ConfigError::Invalid {
            file: file.to_string(),
            line,
            column,
            path: if path == "." || path.is_empty() {
                "-".into()
            } else {
                path
            },
            message,
        }
    })?;
    let (policy, skipped) = compile::compile_with(raw, base, options).map_err(|e| {
        let (line, column) = position(text, &e.path)
            .or_else(|| locate::locate(text, &e.path))
            .unwrap_or((1, 1));
        ConfigError::Invalid {
            file: file.to_string(),
            line,
            column,
            path: e.path,
            message: e.message,
        }
    })?;
    let skipped = skipped
        .into_iter()
        .map(|s| Skipped {
            line: locate::locate(text, &s.path).map_or(1, |(line, _)| line),
            path: s.path,
            message: s.message,
        })
        .collect();
    Ok(Compiled { policy, skipped })
}

/// Where the value at `path` is written, when it is on its key's line (a scalar or a flow
/// `{`/`[`); else the key.
fn position(text: &str, path: &str) -> Option<(usize, usize)> {
    let key = locate::locate_exact(text, path)?;
    match locate::locate_value(text, path) {
        Some(value) if value.0 == key.0 => Some(value),
        _ => Some(key),
    }
}

/// serde_yaml_ng prefixes its own key path and appends " at line L column C"; the error
/// already says both.
pub(crate) fn strip_location(message: &str) -> String {
    let message = match message.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && !prefix.contains(char::is_whitespace) => rest,
        _ => message,
    };
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
