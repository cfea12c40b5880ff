//! chatwarden: a policy-enforcing reverse proxy, built on pingora, for the
//! CRM and WhatsApp Cloud API traffic of a business.
//!
//! The modules read bottom-up as the request's path through the gateway:
//! pure cores (`request`, `route`, `decision`, `gate`, `policy`, `cors`) know nothing of
//! pingora or of the config file; `config` compiles the YAML into an
//! immutable snapshot of those cores' types; `audit` records every
//! decision and `alert` counts it against the alert rules; `proxy` and
//! `admin` are thin pingora adapters; `server` wires services; `demo` and
//! `cli` sit on top.
#![forbid(unsafe_code)]

pub mod decision;
pub mod identity;
mod jsontext;
pub mod request;
pub mod route;

pub mod auth;
pub mod cors;
pub mod echo;
pub mod gate;
pub mod limit;
pub mod policy;
pub mod redact;
pub mod revocation;
pub mod rewrite;
pub mod webhook;

pub mod alert;
pub mod audit;
pub mod config;
pub mod connection;
pub mod explain;
pub mod listening;
pub mod metrics;

pub mod admin;
pub mod proxy;

pub mod reload;
pub mod server;

pub mod cli;
pub mod demo;

#[cfg(test)]
mod test_support;
