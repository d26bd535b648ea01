//! `pins:` in `blobcache.yaml`: where pinned streams are kept and how many bytes may be
//! pinned (docs/operations.md, "Pinning"). Pinning works whenever the tree has a disk tier;
//! this section only changes its defaults.

use std::path::PathBuf;

use serde::Deserialize;

use super::units::ByteSize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinsConfig {
    /// The pins file; default `MOUNT_POINT.pins.json` beside the first disk tier's directory.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Most bytes pinned; default half the disk tier's `max_size`; never more than it.
    #[serde(default)]
    pub pin_max: Option<ByteSize>,
}
