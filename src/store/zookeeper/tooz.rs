//! tooz's lock on ZooKeeper (`CRONLOCK_KEY_STYLE=tooz`), as tooz 1.67.2's
//! kazoo driver names it: kazoo 2.9's Lock (see [`super::kazoo`]) in
//! `/tooz/locks/<name>`, each contender's data the tooz member id, which
//! coolock makes its node name (`--node`, the host name by default; cronlock
//! writes `CRONLOCK_NODE`). The lock lives as long as the session, so it
//! ends with the command: there is no expiry, grace or hold. tooz's
//! `?namespace=` (`CRONLOCK_TOOZ_NAMESPACE`) puts it under `/<namespace>/locks`.

use anyhow::{bail, Context, Result};

use super::settings::is_node_path;

/// kazoo's `paths.join`, which tooz joins its paths with: `/` between the
/// parts, and a part that starts with `/` starts the path again.
fn join(parts: &[&str]) -> String {
    let mut path = String::new();
    for part in parts {
        if part.starts_with('/') {
            path = part.to_string();
        } else {
            if !(path.is_empty() || path.ends_with('/')) {
                path.push('/');
            }
            path.push_str(part);
        }
    }
    path
}

/// Where tooz's locks live in `namespace`: `/<namespace>/locks`, joined as
/// tooz's `KazooDriver.get_lock` joins it (`tooz/drivers/zookeeper.py`).
pub fn locks(namespace: &str) -> Result<String> {
    let path = join(&["/", namespace, "locks"]);
    if !is_node_path(&path) {
        bail!("CRONLOCK_TOOZ_NAMESPACE={namespace:?}: tooz would keep its locks in {path:?}, which is not a ZooKeeper path");
    }
    Ok(path)
}

/// The directory of the lock `name` under `locks` (see [`locks`]):
/// `/tooz/locks/<name>` in the default namespace, as kazoo joins the path.
/// A `/` in the name makes deeper directories, as with tooz; a name kazoo
/// would put elsewhere (a leading `/`) or ZooKeeper refuses (empty parts,
/// `.`, `..`) is refused.
pub fn lock_dir(locks: &str, name: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(name).context("CRONLOCK_KEY: a tooz lock name is text (UTF-8)")?;
    if !is_node_path(&format!("/{name}")) {
        bail!("CRONLOCK_KEY={name:?}: not a ZooKeeper node name for tooz (no empty, . or .. parts, no leading or trailing /)");
    }
    Ok(format!("{locks}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_a_directory_under_tooz_locks() {
        let locks = locks("tooz").unwrap();
        assert_eq!(lock_dir(&locks, b"coolock").unwrap(), "/tooz/locks/coolock");
        assert_eq!(lock_dir(&locks, b"a/b").unwrap(), "/tooz/locks/a/b");
        for bad in [&b""[..], b"/x", b"x/", b"a//b", b"..", b"a/./b", b"\xff"] {
            assert!(lock_dir(&locks, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_namespace_is_joined_as_kazoo_joins_it() {
        assert_eq!(locks("ns").unwrap(), "/ns/locks");
        assert_eq!(locks("/abs").unwrap(), "/abs/locks");
        assert_eq!(locks("a/b").unwrap(), "/a/b/locks");
        assert_eq!(locks("ns/").unwrap(), "/ns/locks");
        assert_eq!(locks("/").unwrap(), "/locks");
        for bad in ["a//b", "..", "./x", "//"] {
            assert!(locks(bad).is_err(), "{bad:?}");
        }
    }
}
