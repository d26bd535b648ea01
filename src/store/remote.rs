//! The [`BlobStore`] of every leaf that asks a remote (`http`, `upstream`, `s3`, `peer`,
//! `http3`), written once.
//!
//! A remote differs from the next only in how it asks `has` and `get` (and, for `s3`, how it
//! writes): that is the [`Remote`] a store implements. The rest of the contract is the same
//! answer for every one of them, and [`RemoteStore`] gives it, so a new remote cannot get it
//! subtly wrong:
//!
//! - **Read-only unless it says otherwise.** `put` and `delete` are refused with
//!   [`Origin::read_only`] (a `Refused` error naming the store); only `s3` overrides them.
//! - **A backend, not a cache.** `has_cached` is `false`: a `get` of a remote is always an
//!   origin fetch, so the prefetcher must not count a remote's blob as warm.
//! - **Starts no fills.** `wait_for_fill` returns at once.
//! - **Cannot list.** `list` is `None`: enumerating a remote is neither cheap nor ours to seed
//!   an index with.
//!
//! The trait's methods return plain futures (no `async_trait` box), so wrapping costs no
//! allocation: [`RemoteStore`]'s own boxed `get` future holds the remote's future inline.

use std::future::Future;

use async_trait::async_trait;
use bytes::Bytes;

use crate::blob::BlobHash;
use crate::store::origin::Origin;
use crate::store::{Blob, BlobStore, StoreResult};

/// What one kind of remote does itself; [`RemoteStore`] makes it a [`BlobStore`].
pub trait Remote: Send + Sync + 'static {
    /// Its name, deadline and verdict on bytes.
    fn origin(&self) -> &Origin;

    /// Whether the remote holds the blob (asked, not remembered).
    fn has(&self, hash: &BlobHash) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The blob, SHA-384-verified (through [`Origin::verified_blob`]) before it is returned.
    fn get(&self, hash: &BlobHash) -> impl Future<Output = StoreResult<Blob>> + Send;

    /// Uploads the blob. Remotes are read-only unless they override this (only `s3` does).
    fn put(&self, _hash: &BlobHash, _data: Bytes) -> impl Future<Output = StoreResult<()>> + Send {
        std::future::ready(Err(self.origin().read_only("put")))
    }

    /// Removes the blob. Refused unless overridden, like [`Remote::put`].
    fn delete(&self, _hash: &BlobHash) -> impl Future<Output = StoreResult<()>> + Send {
        std::future::ready(Err(self.origin().read_only("delete")))
    }
}

/// A [`Remote`] as a leaf of the store tree (see the module docs for what it answers itself).
pub struct RemoteStore<R>(R);

impl<R: Remote> RemoteStore<R> {
    pub fn new(remote: R) -> RemoteStore<R> {
        RemoteStore(remote)
    }
}

#[async_trait]
impl<R: Remote> BlobStore for RemoteStore<R> {
    fn name(&self) -> &str {
        self.0.origin().name()
    }

    async fn has(&self, hash: &BlobHash) -> StoreResult<bool> {
        self.0.has(hash).await
    }

    async fn get(&self, hash: &BlobHash) -> StoreResult<Blob> {
        self.0.get(hash).await
    }

    async fn put(&self, hash: &BlobHash, data: Bytes) -> StoreResult<()> {
        self.0.put(hash, data).await
    }

    async fn delete(&self, hash: &BlobHash) -> StoreResult<()> {
        self.0.delete(hash).await
    }

    /// A backend, not a cache.
    async fn has_cached(&self, _: &BlobHash) -> StoreResult<bool> {
        Ok(false)
    }

    /// Starts no fills.
    async fn wait_for_fill(&self, _: &BlobHash) {}

    /// A remote: cannot list.
    fn list(&self) -> Option<Vec<BlobHash>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use std::time::Duration;

    /// A remote that implements only what every remote must.
    struct Bare(Origin);

    impl Remote for Bare {
        fn origin(&self) -> &Origin {
            &self.0
        }
        async fn has(&self, _: &BlobHash) -> StoreResult<bool> {
            Ok(true)
        }
        async fn get(&self, _: &BlobHash) -> StoreResult<Blob> {
            Err(StoreError::NotFound)
        }
    }

    #[tokio::test]
    async fn a_remote_is_a_read_only_backend_that_cannot_list() {
        let counter = prometheus::IntCounter::new("t", "t").unwrap();
        let store = RemoteStore::new(Bare(Origin::new("far", Duration::from_secs(1), &counter)));
        let hash = BlobHash::of(b"x");
        assert_eq!(store.name(), "far");
        assert!(store.has(&hash).await.unwrap());
        for refused in [
            store.put(&hash, Bytes::from_static(b"x")).await,
            store.delete(&hash).await,
        ] {
            let err = refused.unwrap_err();
            assert_eq!(err.kind(), "refused");
            assert!(err.to_string().starts_with("far: "), "{err}");
        }
        assert!(!store.has_cached(&hash).await.unwrap());
        store.wait_for_fill(&hash).await;
        assert!(store.list().is_none());
    }
}
