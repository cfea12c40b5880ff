//! `chatwarden demo`: the gateway in front of built-in, in-process stand-ins
//! for the CRM and the WhatsApp Cloud API, seeded with a realistic dataset.
//!
//! The same upstreams serve as real HTTP peers for the integration tests.

pub mod idp;
pub mod upstream;

mod launch;

pub use launch::{run, DEMO_CONFIG};
