//! The columns of a table: the types a column can have, how text values are parsed into them
//! and inferred when nothing declares them ([`types`]), and partition expressions
//! ([`partition`]). A vocabulary every stage shares; it imports nothing of hvrlake's but the
//! errors.

pub mod partition;
pub mod types;
