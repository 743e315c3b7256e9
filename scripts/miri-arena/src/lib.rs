//! `src/speed/arena.rs` and its unit tests, built alone for Miri (scripts/test.sh).

#[path = "../../../src/speed/arena.rs"]
pub mod arena;
