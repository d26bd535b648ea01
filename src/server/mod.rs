//! Front doors: each accepts connections, reads requests in its wire format, and writes
//! answers. What they have in common is written once:
//! - [`serve`]: the serving core, the one sequence every door runs for a blob (hash, policy,
//!   request slot, in-flight budget, store), answering [`Served`](serve::Served) or a typed
//!   [`Refusal`](serve::Refusal);
//! - [`door`]: a door's live settings (token, request limits) and its request slots;
//! - [`accept`]: connection admission (global and per-address caps) for TCP and QUIC, with the
//!   client's address from a trusted proxy's PROXY header ([`proxy_protocol`]); the HTTP doors
//!   read it from a trusted proxy's forwarding headers ([`forwarded`]);
//! - [`access_log`]: one line per request, written off the request path;
//! - [`budget`]: the in-flight byte budget every door shares.
//!
//! Each door file keeps only its transport and the translation to its wire: [`http`],
//! [`http3`], [`peer`], the playback routes on the HTTP doors ([`playback`]), and the upload
//! door [`reflector`]. What goes on the wire (paths, framing, message shapes) is
//! [`crate::protocol`]'s.

pub use self::serve::{status_for, BlobService, PROTECTED_MESSAGE};

pub mod accept;
pub mod access_log;
pub mod admin;
pub mod admin_api;
pub mod budget;
pub mod door;
pub mod forwarded;
pub mod http;
pub mod http3;
pub mod metrics;
pub mod peer;
pub mod per_ip;
pub mod playback;
pub mod proxy_protocol;
pub mod reflector;
pub mod serve;
pub mod slots;
pub mod status;
pub mod watched_io;
pub mod web;
