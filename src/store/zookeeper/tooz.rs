//! tooz's lock on ZooKeeper (`CRONLOCK_KEY_STYLE=tooz`), as tooz 1.67.2's
//! kazoo driver names it: kazoo 2.9's Lock (see [`super::kazoo`]) in
//! `/tooz/locks/<name>`, each contender's data the tooz member id, which
//! coolock makes its node name (`--node`, the host name by default; cronlock
//! writes `CRONLOCK_NODE`). The lock lives as long as the session, so it
//! ends with the command: there is no expiry, grace or hold.

use anyhow::{bail, Context, Result};

/// Where tooz's locks live, under its default namespace `tooz`.
pub const LOCKS: &str = "/tooz/locks";

/// The directory of the lock `name`: `/tooz/locks/<name>`, as kazoo joins
/// the path. A `/` in the name makes deeper directories, as with tooz; a
/// name kazoo would put elsewhere (a leading `/`) or ZooKeeper refuses
/// (empty parts, `.`, `..`) is refused.
pub fn lock_dir(name: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(name).context("CRONLOCK_KEY: a tooz lock name is text (UTF-8)")?;
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        bail!("CRONLOCK_KEY={name:?}: not a ZooKeeper node name for tooz (no empty, . or .. parts, no leading or trailing /)");
    }
    Ok(format!("{LOCKS}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_a_directory_under_tooz_locks() {
        assert_eq!(lock_dir(b"coolock").unwrap(), "/tooz/locks/coolock");
        assert_eq!(lock_dir(b"a/b").unwrap(), "/tooz/locks/a/b");
        for bad in [&b""[..], b"/x", b"x/", b"a//b", b"..", b"a/./b", b"\xff"] {
            assert!(lock_dir(bad).is_err(), "{bad:?}");
        }
    }
}
