//! The wire formats prism-lite speaks, one module per format, shared by the side that answers
//! (a front door in [`crate::server`]) and the side that asks (an origin store in
//! [`crate::store`]). A format's facts (paths, keys, framing, what a peer implementation checks)
//! are written down once, in its module's docs, and its vocabulary (message types, constants,
//! the framing rule) is defined once, so a door and a store cannot drift apart.
//!
//! - [`peer`]: the LBRY peer protocol over TCP (`servers.peer` and the `peer` store).
//! - [`http`]: reflector.go's HTTP blob API (`servers.http` and the `upstream` store).
//! - [`http3`]: reflector.go's HTTP/3 blob API (`servers.http3` and the `http3` store).
//! - [`reflector`]: the reflector upload protocol (`servers.reflector`, TCP 5566).
//! - [`frame`]: framing by parsing, shared by [`peer`] and [`reflector`].
//!
//! Two formats live with the code that owns them: the `Via` trace header's JSON in
//! [`crate::trace`], and the LBRY DHT's UDP datagrams in [`crate::dht::wire`].
//!
//! Nothing here does I/O or touches a store: these modules only say what the bytes look like.

pub mod frame;
pub mod http;
pub mod http3;
pub mod peer;
pub mod reflector;
