//! Configuration: `raw` is the YAML as written, `compile` turns it into the runtime `Policy`,
//! `defaults` holds every default. All config errors are made here, and each names the file,
//! line, column and key path.

pub mod compile;
pub mod defaults;
mod locate;
pub mod raw;
#[cfg(test)]
mod tests;

pub use compile::{KeyPlan, Limits, Policy, ServerSettings, Upstream};
use std::path::Path;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
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

/// Read and compile a config file.
pub fn load(path: &Path) -> Result<Policy, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_str(&text, &file, base)
}

/// Compile config text. `file` names it in errors; relative `jwks_file` paths are taken from
/// `base`.
pub fn from_str(text: &str, file: &str, base: &Path) -> Result<Policy, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: raw::RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let reported = inner.location().map(|l| (l.line(), l.column()));
        // serde_yaml_ng places an error of our own types (a bad duration) at the start of the
        // enclosing mapping: the key, when the file has it, is nearer the mistake.
        let (line, column) = match (reported, locate::locate_exact(text, &path)) {
            (Some(r), Some(key)) if r < key => key,
            (Some(r), _) => r,
            (None, _) => locate::locate(text, &path).unwrap_or((1, 1)),
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
            message: strip_location(&inner.to_string()),
        }
    })?;
    compile::compile(raw, base).map_err(|e| {
        let (line, column) = locate::locate(text, &e.path).unwrap_or((1, 1));
        ConfigError::Invalid {
            file: file.to_string(),
            line,
            column,
            path: e.path,
            message: e.message,
        }
    })
}

/// serde_yaml_ng prefixes its own key path and appends " at line L column C"; the error
/// already says both.
fn strip_location(message: &str) -> String {
    let message = match message.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && !prefix.contains(char::is_whitespace) => rest,
        _ => message,
    };
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
