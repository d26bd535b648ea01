//! When each info hash is next due at one tracker: a time-ordered set, so the announcer takes
//! the due ones in batches and sleeps until the next.

use std::collections::{BTreeSet, HashMap};

use tokio::time::Instant;

use super::wire::InfoHash;

#[derive(Default)]
pub struct Schedule {
    due: BTreeSet<(Instant, InfoHash)>,
    at: HashMap<InfoHash, Instant>,
}

impl Schedule {
    /// Sets (or moves) `hash`'s next announce to `when`.
    pub fn set(&mut self, hash: InfoHash, when: Instant) {
        if let Some(old) = self.at.insert(hash, when) {
            self.due.remove(&(old, hash));
        }
        self.due.insert((when, hash));
    }

    /// When the earliest announce is due.
    pub fn next(&self) -> Option<Instant> {
        self.due.first().map(|(when, _)| *when)
    }

    /// Up to `max` hashes due by `now`, earliest first. They stay scheduled where they were
    /// until [`Schedule::set`] moves them.
    pub fn due(&self, now: Instant, max: usize) -> Vec<InfoHash> {
        self.due
            .iter()
            .take_while(|(when, _)| *when <= now)
            .take(max)
            .map(|(_, hash)| *hash)
            .collect()
    }

    /// Every scheduled hash (for `stopped` at shutdown).
    pub fn all(&self) -> Vec<InfoHash> {
        self.at.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_in_time_order_and_moved_on_set() {
        let now = Instant::now();
        let mut s = Schedule::default();
        s.set([2; 20], now + Duration::from_secs(1));
        s.set([1; 20], now);
        s.set([3; 20], now + Duration::from_secs(60));
        assert_eq!(
            s.due(now + Duration::from_secs(1), 10),
            vec![[1; 20], [2; 20]]
        );
        assert_eq!(s.due(now + Duration::from_secs(1), 1), vec![[1; 20]]);
        s.set([1; 20], now + Duration::from_secs(120));
        assert_eq!(s.due(now + Duration::from_secs(1), 10), vec![[2; 20]]);
        assert_eq!(s.next(), Some(now + Duration::from_secs(1)));
        assert_eq!(s.len(), 3);
    }
}
