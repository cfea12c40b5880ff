//! The one integration test binary: the real proxy, in-process, against
//! real upstreams on loopback; plus a few tests that spawn the built binary.

mod harness;
mod idp;
mod upstream;

mod admin_tls;
mod alerts;
mod audit;
mod authn;
mod bodies;
mod body_scope;
mod browser;
mod cli;
mod config_files;
mod connections;
mod cors;
mod fetched;
mod hygiene;
mod limits;
mod links;
mod origins;
mod overrides;
mod ownership;
mod proxy;
mod redaction;
mod redis_alerts;
mod redis_limits;
mod redis_revocations;
mod redis_tls;
mod reload;
mod rowfilter;
mod spec_coverage;
mod tls;
mod upgrades;
