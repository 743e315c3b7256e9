//! The directory store's settings: `file:///path`.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::config::url;

/// Where the lock files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryTarget {
    /// The directory, from the URL's absolute path.
    pub path: PathBuf,
}

impl fmt::Display for DirectoryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "directory {}", self.path.display())
    }
}

/// `file:///path` (`rest` is what follows `file://`).
pub fn parse(rest: &str) -> Result<DirectoryTarget> {
    if !rest.starts_with('/') {
        bail!("CRONLOCK_URL=\"file://{rest}\": a file URL needs an absolute path, as in file:///var/lock/cronlock");
    }
    Ok(DirectoryTarget {
        path: PathBuf::from(url::percent_decode(rest, "path")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absolute_path_only() {
        assert_eq!(
            parse("/var/lock/cronlock").unwrap().path,
            PathBuf::from("/var/lock/cronlock")
        );
        assert_eq!(parse("/var/lock/a%20b").unwrap().path, PathBuf::from("/var/lock/a b"));
        assert!(parse("relative").is_err());
    }
}
