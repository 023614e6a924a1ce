//! hvrlake's integration tests, one binary so that deltalake and DataFusion are linked once.
//! Each module is a behaviour, driven as HVR drives hvrlake (argv + environment, through
//! [`helpers::Hvr`]) or through the library where a stage is tested on its own.

mod helpers;

mod agent;
mod backfill;
mod bad_input;
mod channel;
mod coalesce_plans;
mod data_files;
mod deletion_vectors;
mod exactly_once;
mod layout;
mod object_targets;
mod parquet_input;
mod partitions;
mod reader_equivalence;
mod table_modes;
mod upkeep;
