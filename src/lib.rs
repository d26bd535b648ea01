//! prism-lite: a small, fast, never-wrong blob cache for the LBRY/Odysee network.
//!
//! The crate is a library first (tests and benches drive it directly) with a thin CLI on top.
//! Request flow: a front door in [`server`] parses and limits a request, then asks the root of
//! the [`store`] tree built from `blobcache.yaml` ([`config`]); [`metrics`] counts everything.
//! What goes on the wire is defined once in [`protocol`], for the doors and the stores alike.

pub mod app;
pub mod blob;
pub mod blocklist;
pub mod config;
pub mod dht;
pub mod encode;
pub mod hashlist;
pub mod metrics;
pub mod nat;
pub mod policy;
pub mod prefetch;
pub mod protocol;
pub mod quic;
pub mod reachability;
pub mod reload;
pub mod secret;
pub mod server;
pub mod store;
pub mod stream;
pub mod trace;
pub mod tracker;
