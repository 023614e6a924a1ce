//! The HVR side: the AgentPlugin call (`call`), its `HVR_*` environment (`env`) and how the
//! files it lists map to tables (`files`), one call at a time per location (`lock`).

#[cfg(feature = "lake")]
pub mod call;
pub mod env;
pub mod files;
pub mod lock;
#[cfg(feature = "lake")]
pub mod recover;
