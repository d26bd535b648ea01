//! Wire formats, one module per protocol (message types and framing), shared by doors and stores.

pub mod reflector;
