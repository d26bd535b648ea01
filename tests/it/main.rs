//! All integration tests in one crate: one binary links the AWS SDK and QUIC stacks once instead
//! of once per test file, which was most of CI's build time. One module per area; shared
//! support (fixtures, a controllable origin, process and port helpers) lives in `common`.

mod common;

mod access_log;
mod admin;
mod caching_store;
mod cli;
mod client_address;
mod cluster;
mod config_files;
mod dht;
mod disk_store;
mod doors;
mod hostile;
mod http3;
mod http3_zero_copy;
mod http_origin;
mod http_server;
mod nat;
mod operate;
mod peer_protocol;
mod playback;
mod playback_browser;
mod player_routes;
mod prefetch;
mod reflector_command;
mod reflector_flags;
mod reflector_ingest;
mod s3_store;
mod secrets;
mod status_page;
mod stream_fixtures;
mod trackers;
mod two_tier;
mod upload_command;
