//! What the daemons' TOML configurations share: reading and parsing them,
//! reading their pre-shared keys, and errors that name the file and the fix.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}")]
    Read {
        /// Config path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("config {path}")]
    Parse {
        /// Config path.
        path: PathBuf,
        /// What is wrong, with line and column.
        source: toml::de::Error,
    },
    /// A value is not acceptable.
    #[error("config {path}: {why}")]
    Invalid {
        /// Config path.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// The key file is missing or too short.
    #[error("key {path}: {why}; create one with `head -c 32 /dev/urandom | base64 > {path}` (mode 0600) and put the same file at the other end (the other site; for a host's key, the key_file of its [[hosts.allow]] entry at mirrord)")]
    Key {
        /// Key path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl ConfigError {
    /// A value of the config at `path` that cannot be used, and why.
    pub fn invalid(path: &Path, why: String) -> ConfigError {
        ConfigError::Invalid {
            path: path.into(),
            why,
        }
    }
}

/// A configuration type: parsed from TOML, then checked as a whole.
pub trait Checked: DeserializeOwned {
    /// Checks the values that TOML alone cannot (ranges, names, combinations);
    /// `path` is for messages.
    fn check(self, path: &Path) -> Result<Self, ConfigError>;
}

/// Reads, parses and checks the config file at `path`.
pub fn load<T: Checked>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and checks config text (unknown keys are errors where the type
/// says so); `path` is only for messages.
pub fn parse<T: Checked>(text: &str, path: &Path) -> Result<T, ConfigError> {
    let config: T = toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })?;
    config.check(path)
}

/// Reads a host's key file ([`read_key`]), refused when anyone but its
/// owner may read or write it (a key others can read authenticates anyone).
pub fn read_private_key(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::Key {
        path: path.into(),
        why: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Key {
            path: path.into(),
            why: format!(
                "its mode is {mode:04o}: group and others may read it; run `chmod 600 {}`",
                path.display()
            ),
        });
    }
    read_key(path)
}

/// Reads a pre-shared key file (surrounding whitespace ignored; at least 16 bytes).
pub fn read_key(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let key = std::fs::read(path).map_err(|e| ConfigError::Key {
        path: path.into(),
        why: e.to_string(),
    })?;
    let key = key.trim_ascii().to_vec();
    if key.len() < 16 {
        return Err(ConfigError::Key {
            path: path.into(),
            why: format!("the key is {} bytes; at least 16 are needed", key.len()),
        });
    }
    Ok(key)
}

/// Site, host, pair and volume names: letters, digits, `-`, `_`, `.`; at most 64.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} '{name}' is not a valid name: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}
