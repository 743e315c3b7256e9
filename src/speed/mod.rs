//! The measured speed tricks, in one place so their cost and reasons are
//! read together: starting at C's `main` ([`startup`]) and the bump
//! allocator ([`arena`]). Each file gives its measurement; docs/performance.md
//! has the figures of a whole run.

pub mod arena;
pub mod startup;
