//! Every way a run of cronlock can end, and the one conversion to an exit status.
//!
//! The codes 200, 201 and 202 are the original script's contract with cron
//! and monitoring; they appear in this file and nowhere else.

/// How a run ended. "Lock held" and "timed out" are outcomes, not errors:
/// only failures of cronlock itself travel as `anyhow::Error` and become
/// [`Outcome::Error`] in `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and exited with this code.
    Exited(i32),
    /// The command was killed by this signal (reported as 128 + N, as shells do).
    Signaled(i32),
    /// Someone else holds the lock; the command was not run.
    Held,
    /// `CRONLOCK_RESET=yes` removed the key.
    ResetDone,
    /// The command outlived `CRONLOCK_TIMEOUT` and its process group was killed.
    TimedOut,
    /// The command could not be found (as a shell reports it).
    NotFound,
    /// The command was found but could not be executed.
    NotExecutable,
    /// Configuration, connection or protocol failure of cronlock itself.
    Error,
}

impl Outcome {
    /// The process exit status for this outcome.
    pub fn code(self) -> u8 {
        match self {
            // Exit statuses are 8 bits wide; wrap as the kernel does.
            Outcome::Exited(code) => (code & 0xff) as u8,
            Outcome::Signaled(signal) => (128 + (signal & 0x7f)) as u8,
            Outcome::Held | Outcome::ResetDone => 200,
            Outcome::Error => 201,
            Outcome::TimedOut => 202,
            Outcome::NotFound => 127,
            Outcome::NotExecutable => 126,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_original_contract() {
        assert_eq!(Outcome::Held.code(), 200);
        assert_eq!(Outcome::ResetDone.code(), 200);
        assert_eq!(Outcome::Error.code(), 201);
        assert_eq!(Outcome::TimedOut.code(), 202);
        assert_eq!(Outcome::NotFound.code(), 127);
        assert_eq!(Outcome::NotExecutable.code(), 126);
        assert_eq!(Outcome::Exited(3).code(), 3);
        assert_eq!(Outcome::Exited(256 + 4).code(), 4);
        assert_eq!(Outcome::Signaled(15).code(), 143);
    }
}
