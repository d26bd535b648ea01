//! A serving door's live rules: which door it is, the settings a reload swaps in (its token and
//! request limits), and its request slots with their bounded queue.
//!
//! Every serving door (HTTP, HTTP/3, peer, and the playback routes on the HTTP doors) takes a
//! slot the same way: a free slot at once; otherwise wait in the queue, if it has room, for at
//! most `queue_timeout`; otherwise be refused. A flood therefore costs a fixed amount of memory
//! on every door, and the doors agree on what "busy" means.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::IntGauge;
use tokio::sync::OwnedSemaphorePermit;

use crate::config::DoorSettings;
use crate::server::slots::Slots;

/// Which door a request came through: names its metric series and its wire vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DoorKind {
    Http,
    Http3,
    Peer,
}

impl DoorKind {
    /// The door's name in logs and in the `door`/`server` labels of the metrics.
    pub fn name(self) -> &'static str {
        match self {
            DoorKind::Http => "http",
            DoorKind::Http3 => "http3",
            DoorKind::Peer => "peer",
        }
    }
}

/// One serving door's live settings and request slots.
pub struct Door {
    kind: DoorKind,
    settings: ArcSwap<DoorSettings>,
    slots: Slots,
    queued: AtomicUsize,
    /// reflector.go's `http_blob_request_queue_size` / `http3_blob_request_queue_size`, kept by
    /// the doors that have one (HTTP, HTTP/3).
    queue_gauge: Option<IntGauge>,
}

impl Door {
    pub fn new(kind: DoorKind, settings: DoorSettings, queue_gauge: Option<IntGauge>) -> Arc<Door> {
        Arc::new(Door {
            kind,
            slots: Slots::new(settings.requests.max_concurrent),
            settings: ArcSwap::from_pointee(settings),
            queued: AtomicUsize::new(0),
            queue_gauge,
        })
    }

    pub fn kind(&self) -> DoorKind {
        self.kind
    }

    /// The settings in force now.
    pub fn settings(&self) -> Arc<DoorSettings> {
        self.settings.load_full()
    }

    /// Applies a reload: the token at once, a raised request limit at once, a lowered one as
    /// in-flight requests finish (nothing in flight is interrupted). Where the door listens is
    /// fixed at start; the new `shutdown_timeout` applies at the next drain.
    pub fn reconfigure(&self, settings: DoorSettings) {
        self.slots.resize(settings.requests.max_concurrent);
        self.settings.store(Arc::new(settings));
    }

    /// A request slot, waiting as the module docs say; `None` when the door is busy.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(self.slots.semaphore()).try_acquire_owned() {
            return Some(permit);
        }
        let limits = self.settings.load().requests.clone();
        if self.queued.fetch_add(1, Ordering::AcqRel) >= limits.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let _waiting = Waiting::new(self);
        tokio::time::timeout(
            limits.queue_timeout,
            Arc::clone(self.slots.semaphore()).acquire_owned(),
        )
        .await
        .ok()
        .and_then(Result::ok)
    }
}

/// One request in the queue; leaving it (with or without a slot, or cancelled) takes it out.
struct Waiting<'a>(&'a Door);

impl<'a> Waiting<'a> {
    fn new(door: &'a Door) -> Waiting<'a> {
        if let Some(gauge) = &door.queue_gauge {
            gauge.inc();
        }
        Waiting(door)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
        if let Some(gauge) = &self.0.queue_gauge {
            gauge.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpServerConfig, ServersConfig};

    fn door(yaml: &str) -> Arc<Door> {
        let servers: ServersConfig = serde_yaml::from_str(yaml).unwrap();
        let http: HttpServerConfig = servers.http.unwrap();
        Door::new(
            DoorKind::Http,
            http.settings(),
            Some(IntGauge::new("q", "q").unwrap()),
        )
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_a_queued_request_gets_a_freed_slot() {
        let d =
            door("http: {max_concurrent_requests: 1, max_queued_requests: 1, queue_timeout: 30s}");
        let held = d.slot().await.expect("a free slot");
        let queued = {
            let d = Arc::clone(&d);
            tokio::spawn(async move { d.slot().await.is_some() })
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while d.queued.load(Ordering::Acquire) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never queued");
            tokio::task::yield_now().await;
        }
        assert!(d.slot().await.is_none(), "the queue holds one");
        drop(held);
        assert!(
            queued.await.unwrap(),
            "the queued request gets the freed slot"
        );
        assert_eq!(d.queued.load(Ordering::Acquire), 0);
        assert_eq!(d.queue_gauge.as_ref().unwrap().get(), 0);
    }

    #[tokio::test]
    async fn a_queued_request_gives_up_after_queue_timeout() {
        let d = door("http: {max_concurrent_requests: 1, queue_timeout: 20ms}");
        let _held = d.slot().await.unwrap();
        assert!(d.slot().await.is_none());
        assert_eq!(d.queued.load(Ordering::Acquire), 0);
    }
}
