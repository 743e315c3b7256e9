//! kazoo's Lock recipe, in the two versions whose peers cronlock meets:
//! kazoo 2.2's, as lockex takes it (`CRONLOCK_KEY_STYLE=lockex`), and kazoo
//! 2.9's, as tooz 1.67.2 takes it (`CRONLOCK_KEY_STYLE=tooz`).
//!
//! Both make the lock's directory (persistent nodes, empty), create an
//! ephemeral sequential child named `<uuid4 hex>__lock__<10 digits>` with
//! the caller's data, and list the children: the lowest contender holds the
//! lock. Without waiting (how both peers are run, and how cronlock takes
//! every lock), a contender that is not the lowest removes its node again.
//! The versions differ in which children contend and how they are ordered
//! ([`Recipe`]); kazoo 2.9 is stricter, so a child another program left in
//! the directory keeps a lockex out but not a tooz.

use anyhow::{anyhow, Context, Result};
use zookeeper_client::{Error as ZkError, Stat};

use super::{ephemeral_sequential, Session};
use crate::lock::Seen;

/// kazoo's marker between a contender node's uuid and its sequence.
pub const LOCK_MARK: &str = "__lock__";

/// Which kazoo's Lock a style takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// kazoo 2.2: every child contends, ordered by what follows its first
    /// `__lock__` (by the name from its 8th byte when there is none).
    Kazoo22,
    /// kazoo 2.9's exclusive `Lock`: only children whose names end in
    /// `__lock__` and ten digits (a `-` allowed before them) contend,
    /// ordered by those digits as text. Its read-write locks' `__rlock__`
    /// children are not among them: only `WriteLock` counts those.
    Kazoo29,
}

impl Recipe {
    /// The text `child` is ordered by among the contenders, or `None` when
    /// this recipe does not count it.
    pub fn rank(self, child: &str) -> Option<&str> {
        match self {
            // Python's `c[c.find("__lock__") + 8:]`, `find` giving -1 when absent.
            Recipe::Kazoo22 => {
                let from = child
                    .find(LOCK_MARK)
                    .map_or(LOCK_MARK.len() - 1, |i| i + LOCK_MARK.len());
                Some(child.get(from..).unwrap_or(""))
            }
            // The regular expression `(?:__lock__)(-?\d{10})$`, searched.
            Recipe::Kazoo29 => {
                let digits = child.len().checked_sub(10)?;
                let tail = child.get(digits..)?;
                if !tail.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let head = &child[..digits];
                let (head, from) = match head.strip_suffix('-') {
                    Some(head) => (head, digits - 1),
                    None => (head, digits),
                };
                head.ends_with(LOCK_MARK).then(|| &child[from..])
            }
        }
    }

    /// The contenders among `children`, the holder first (a stable sort, as
    /// Python's).
    pub fn contenders(self, mut children: Vec<String>) -> Vec<String> {
        children.retain(|child| self.rank(child).is_some());
        children.sort_by(|a, b| self.rank(a).cmp(&self.rank(b)));
        children
    }
}

/// A new contender's name prefix, `<uuid4 hex>__lock__`: the server
/// appends the sequence.
pub fn prefix() -> String {
    format!("{}{LOCK_MARK}", crate::net::random::uuid4_hex())
}

impl Session {
    /// kazoo's `acquire(blocking=False)` on the lock in `dir`, our node's
    /// data `data`: our node's name and stat when it is the lowest
    /// contender; `None` (our node removed again) when another is. `check`
    /// is shown the directory's own data (read in the same round trip as
    /// the children) and may refuse the take, our node then removed.
    pub(super) fn try_kazoo_lock(
        &self,
        dir: &str,
        data: &[u8],
        recipe: Recipe,
        check: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<Option<(String, Stat)>> {
        let prefix = prefix();
        self.ensure(dir)?;
        let (stat, sequence) = self
            .call(
                self.client
                    .create(&format!("{dir}/{prefix}"), data, &ephemeral_sequential()),
            )
            .map_err(anyhow::Error::from)
            .with_context(|| format!("creating a contender under {dir}"))?;
        let name = format!("{prefix}{sequence}");
        let (children, dir_data) = self.call_pair(self.client.list_children(dir), self.client.get_data(dir))?;
        if let Ok((dir_data, _)) = dir_data {
            if let Err(refused) = check(&dir_data) {
                let _ = self.call(self.client.delete(&format!("{dir}/{name}"), None));
                return Err(refused);
            }
        }
        let children = children
            .map_err(anyhow::Error::from)
            .with_context(|| format!("listing {dir}"))?;
        if recipe.contenders(children).first() == Some(&name) {
            return Ok(Some((name, stat)));
        }
        match self.call(self.client.delete(&format!("{dir}/{name}"), None)) {
            Ok(()) | Err(ZkError::NoNode) => Ok(None),
            Err(err) => Err(anyhow!(err).context(format!("removing {dir}/{name}"))),
        }
    }

    /// The lock in `dir` (which stands for `key`) as cronlockctl shows it:
    /// held while it has contenders, by the lowest, whose data names it.
    /// kazoo's lock has no expiry; its holder is live for as long as its
    /// node exists.
    pub(super) fn kazoo_holder(&self, key: &[u8], dir: &str, recipe: Recipe) -> Result<Option<Seen>> {
        let children = match self.call(self.client.list_children(dir)) {
            Ok(children) => children,
            Err(ZkError::NoNode) => return Ok(None),
            Err(err) => return Err(anyhow!(err).context(format!("listing {dir}"))),
        };
        // A loser removes its node again, so a child may be gone when read:
        // the next one is then the lowest.
        for child in recipe.contenders(children) {
            let data = match self.call(self.client.get_data(&format!("{dir}/{child}"))) {
                Ok((data, _)) => data,
                Err(ZkError::NoNode) => continue,
                Err(err) => return Err(anyhow!(err).context(format!("reading {dir}/{child}"))),
            };
            return Ok(Some(Seen {
                key: key.to_vec(),
                expires_at: None,
                now: self.now()?,
                owner: (!data.is_empty()).then(|| String::from_utf8_lossy(&data).into_owned()),
                running: Some(true),
            }));
        }
        Ok(None)
    }

    /// Removes every child of `dir` (whoever's); true if there was one.
    pub(super) fn clear_kazoo_lock(&self, dir: &str) -> Result<bool> {
        let children = match self.call(self.client.list_children(dir)) {
            Ok(children) => children,
            Err(ZkError::NoNode) => return Ok(false),
            Err(err) => return Err(anyhow!(err).context(format!("listing {dir}"))),
        };
        for child in &children {
            match self.call(self.client.delete(&format!("{dir}/{child}"), None)) {
                Ok(()) | Err(ZkError::NoNode) => {}
                Err(err) => return Err(anyhow!(err).context(format!("deleting {dir}/{child}"))),
            }
        }
        Ok(!children.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(children: &[&str]) -> Vec<String> {
        children.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn kazoo_2_2_counts_every_child_by_what_follows_the_mark() {
        let children = names(&[
            "ffff__lock__0000000003",
            "0000__lock__0000000010",
            "aaaa__lock__0000000001",
            "stray",
        ]);
        let ordered = Recipe::Kazoo22.contenders(children);
        // Python: "stray"[7:] is "", lower than any sequence.
        assert_eq!(
            ordered,
            [
                "stray",
                "aaaa__lock__0000000001",
                "ffff__lock__0000000003",
                "0000__lock__0000000010"
            ]
        );
        // Python: "no-mark-here"[-1 + 8:]
        assert_eq!(Recipe::Kazoo22.rank("no-mark-here"), Some("-here"));
    }

    #[test]
    fn kazoo_2_9_counts_only_lock_nodes_with_ten_digits() {
        let rank = |child| Recipe::Kazoo29.rank(child);
        assert_eq!(rank("0123abcd__lock__0000000007"), Some("0000000007"));
        assert_eq!(rank("x__lock__0000000007"), Some("0000000007"));
        assert_eq!(rank("x__lock__-000000007"), None, "a sign and nine digits");
        assert_eq!(rank("x__lock__-0000000007"), Some("-0000000007"));
        for ignored in [
            "x__rlock__0000000001",
            "x__lock__000000001",
            "x__lock__00000000001a",
            "x__lock__",
            "stray",
            "0000000001",
            "x__lock__0000000001/",
        ] {
            assert_eq!(rank(ignored), None, "{ignored}");
        }
        // Eleven digits: the last ten follow "__lock__" only with one left over.
        assert_eq!(rank("x__lock__00000000012"), None);
        let ordered = Recipe::Kazoo29.contenders(names(&[
            "b__lock__0000000005",
            "a__rlock__0000000001",
            "stray0000000000",
            "c__lock__0000000004",
        ]));
        assert_eq!(ordered, ["c__lock__0000000004", "b__lock__0000000005"]);
    }
}
