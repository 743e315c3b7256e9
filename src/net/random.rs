//! Randomness, in the two kinds cronlock needs: tokens that tell one run's
//! lock from another's, from the operating system's random source through
//! `getrandom`; and a small fast generator for jitter and pauses, where
//! spreading hosts and waiters apart is all that matters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 16 random bytes as 32 lowercase hex digits: a run's proof that a lock
/// is its own (written into the store's record, compared on release).
pub fn token() -> String {
    hex(&random_bytes())
}

/// A random (version 4) UUID as 32 hex digits without dashes, as Python's
/// `uuid.uuid4().hex` gives it to kazoo's lock recipe.
pub fn uuid4_hex() -> String {
    hex(&uuid4())
}

/// A random (version 4) UUID's 16 bytes, as Python's `uuid.uuid4().bytes`
/// gives them to tooz's etcd3gw lock as its value.
pub fn uuid4() -> [u8; 16] {
    let mut bytes = random_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes
}

/// 16 bytes from the operating system. Where it has none to give (a
/// seccomp filter, an old kernel without /dev/urandom in a chroot), the
/// time and the pid: unique enough among one job's concurrent runs, which
/// is all a token must be (it guards nothing secret).
fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// xorshift64*, seeded from the clock and the pid: enough to spread hosts
/// and waiters apart, and nothing here needs more.
pub struct Random(u64);

impl Random {
    /// A generator seeded from the clock and the pid.
    pub fn seeded() -> Random {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Random((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration from zero to `limit`, in whole milliseconds.
    pub fn up_to(&mut self, limit: Duration) -> Duration {
        let millis = limit.as_millis() as u64;
        Duration::from_millis(self.next() % (millis + 1))
    }

    /// `base` give or take a quarter.
    pub fn around(&mut self, base: Duration) -> Duration {
        base * 3 / 4 + self.up_to(base / 2)
    }

    /// `base` give or take a half.
    pub fn around_half(&mut self, base: Duration) -> Duration {
        base / 2 + self.up_to(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_digits_and_differ() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn uuids_carry_version_4_and_the_rfc_variant() {
        let id = uuid4_hex();
        assert_eq!(id.len(), 32);
        assert_eq!(&id[12..13], "4", "{id}");
        assert!(matches!(&id[16..17], "8" | "9" | "a" | "b"), "{id}");
    }

    #[test]
    fn random_durations_stay_in_bounds_and_spread() {
        let mut random = Random(0x1234_5678_9abc_def1);
        let limit = Duration::from_millis(1000);
        let draws: Vec<Duration> = (0..1000).map(|_| random.up_to(limit)).collect();
        assert!(draws.iter().all(|d| *d <= limit));
        assert!(draws.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(900)));
        for _ in 0..1000 {
            let d = random.around(Duration::from_millis(800));
            assert!(
                d >= Duration::from_millis(600) && d <= Duration::from_millis(1000),
                "{d:?}"
            );
            let d = random.around_half(Duration::from_millis(800));
            assert!(
                d >= Duration::from_millis(400) && d <= Duration::from_millis(1200),
                "{d:?}"
            );
        }
    }
}
