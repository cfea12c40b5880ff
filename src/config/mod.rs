//! Configuration: the YAML file (`raw`), `${VAR}` expansion (`env`),
//! compilation into an immutable `Snapshot` (`compile`), and the live
//! handle that publishes snapshots to requests (`store`).

pub mod compile;
mod compile_alerts;
mod compile_auth;
mod compile_cors;
mod compile_limits;
mod compile_policy;
pub mod duration;
pub mod env;
pub mod raw;
pub mod raw_alerts;
pub mod snapshot;
pub mod store;

pub use compile::{fingerprint, load_file, load_str, ConfigError, ConfigErrors};
pub use env::{EnvLookup, ProcessEnv};
pub use snapshot::Snapshot;
pub use store::ConfigStore;
