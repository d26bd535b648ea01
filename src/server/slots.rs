//! A limit on store calls in flight that a reload can raise or lower (`max_concurrent_requests`
//! of `servers.http` and `servers.http3`).
//!
//! A tokio semaphore cannot be shrunk directly, and it cannot tell how many permits it was
//! meant to have, so this keeps the configured number next to it: raising adds permits at once,
//! lowering takes the excess away as in-flight calls finish (nothing in flight is interrupted).

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

pub struct Slots {
    semaphore: Arc<Semaphore>,
    /// How many permits `semaphore` is meant to have.
    limit: Mutex<usize>,
}

impl Slots {
    /// `limit` slots (at least one).
    pub fn new(limit: usize) -> Slots {
        let limit = limit.max(1);
        Slots {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit: Mutex::new(limit),
        }
    }

    /// The semaphore callers acquire a slot from.
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.semaphore
    }

    /// Changes the limit to `new_limit` (at least one). Must run inside a tokio runtime: a
    /// lower limit is reached by a task that takes the excess permits as they come back.
    pub fn resize(&self, new_limit: usize) {
        let new_limit = new_limit.max(1);
        let mut limit = self.limit.lock().unwrap_or_else(|p| p.into_inner());
        if new_limit > *limit {
            self.semaphore.add_permits(new_limit - *limit);
        } else if new_limit < *limit {
            let excess = u32::try_from(*limit - new_limit).unwrap_or(u32::MAX);
            let semaphore = Arc::clone(&self.semaphore);
            tokio::spawn(async move {
                if let Ok(permits) = semaphore.acquire_many_owned(excess).await {
                    permits.forget();
                }
            });
        }
        *limit = new_limit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resizing_adds_at_once_and_removes_as_permits_return() {
        let slots = Slots::new(2);
        slots.resize(4);
        assert_eq!(slots.semaphore().available_permits(), 4);
        let held = Arc::clone(slots.semaphore())
            .acquire_many_owned(4)
            .await
            .unwrap();
        slots.resize(1);
        drop(held);
        // The shrinking task takes 3 of the 4 returned permits; wait for it (bounded).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while slots.semaphore().available_permits() != 1 {
            assert!(tokio::time::Instant::now() < deadline, "limit never shrank");
            tokio::task::yield_now().await;
        }
    }
}
