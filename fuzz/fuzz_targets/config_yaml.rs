//! `blobcache.yaml` loading (what `blobcache`, `check-config` and a SIGHUP reload read), and the
//! store tree's description `check-config` prints from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_lite::config::{self, BlobcacheConfig, StoreConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = config::parse::<BlobcacheConfig>(text, "blobcache.yaml") else {
        return;
    };
    describe(&cfg.store, 0);
    let _ = format!("{cfg:?}");
});

/// Walks the tree as `check-config` does.
fn describe(store: &StoreConfig, depth: usize) {
    assert!(depth < 1000, "store tree deeper than its text");
    let _ = (store.name(), store.summary(), store.disks());
    for (_, child) in store.children() {
        describe(child, depth + 1);
    }
}
