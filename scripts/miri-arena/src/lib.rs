//! `src/arena.rs` and its unit tests, built alone for Miri (scripts/test.sh).

#[path = "../../../src/arena.rs"]
pub mod arena;
