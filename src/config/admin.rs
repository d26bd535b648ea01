//! `admin:` in `blobcache.yaml`: the admin API on the metrics port (docs/operations.md,
//! "Admin API"). Off unless a token is set.

use serde::Deserialize;

use crate::secret::SecretString;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// What `Authorization: Bearer ...` must carry. A secret: never logged or shown.
    pub token: SecretString,
    /// Admin operations running at once; more are answered 503 (a warm holds one until the
    /// whole stream is fetched).
    #[serde(default = "defaults::max_concurrent")]
    pub max_concurrent: usize,
    /// Content blobs a warm fetches at once.
    #[serde(default = "defaults::warm_concurrency")]
    pub warm_concurrency: usize,
}

mod defaults {
    pub fn max_concurrent() -> usize {
        2
    }
    pub fn warm_concurrency() -> usize {
        4
    }
}
