//! What HVR hands a call: its `HVR_*` environment (`env`), how the files it lists map to
//! tables (`files`), and one call at a time per file location (`lock`). Leaves: the call
//! itself is `crate::call`.

pub mod env;
pub mod files;
pub mod lock;
