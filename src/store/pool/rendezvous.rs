//! Rendezvous (highest-random-weight) hashing: which endpoint of a pool is a blob's *home*, and
//! in which order the others follow it.
//!
//! Every endpoint gets a score per blob; the highest score is the home, the rest are the
//! failover order. Three properties make this the right tool for a tier of regional caches:
//!
//! - **No coordination.** The ranking is a pure function of (endpoint names, weights, blob
//!   hash), so every edge with the same list picks the same home without talking to the others,
//!   and the regionals split the keyspace instead of each caching everything. The order of the
//!   list does not matter (ties, which need a 2^-53 coincidence, break by name).
//! - **Minimal movement.** Adding an (N+1)th endpoint moves only the blobs it now wins, about
//!   1/(N+1) of them, all to the new endpoint; removing one moves only the blobs it was home for.
//!   A ring (consistent hashing) needs virtual nodes to get close to this; HRW gets it exactly.
//! - **Stable everywhere.** The hash is fixed and documented, not std's per-process
//!   `RandomState`, so edges on different machines and different prism-lite versions agree:
//!
//!   `u = (first 8 bytes of SHA-256(len(name) as u64 big-endian || name || blob hash (48 raw
//!   bytes)), as a big-endian u64, >> 11) + 0.5) / 2^53`, so `u` is in (0, 1), and
//!   `score = -weight / ln(u)`.
//!
//!   That is the standard weighted-HRW formula (Schindelhauer & Schomaker): an endpoint of
//!   weight 2 is home for twice as many blobs as one of weight 1, and changing one weight moves
//!   only the blobs that endpoint gains or loses. The name is the endpoint's normalised name
//!   (see [`crate::config::pool::url_name`]), so spelling differences between edges' lists do
//!   not split the keyspace.

use sha2::{Digest, Sha256};

use crate::blob::BlobHash;

/// The scoring of one pool's endpoints.
#[derive(Debug, Clone)]
pub struct Ranking {
    nodes: Vec<(String, f64)>,
}

impl Ranking {
    /// `nodes`: each endpoint's name and weight (positive, finite: the config checks).
    pub fn new(nodes: impl IntoIterator<Item = (String, f64)>) -> Ranking {
        Ranking {
            nodes: nodes.into_iter().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Indexes of the endpoints, best first: the blob's home, then its failover order.
    pub fn rank(&self, blob: &BlobHash) -> Vec<usize> {
        // The common single-address store: nothing to score (a hash per endpoint, per request).
        if self.nodes.len() == 1 {
            return vec![0];
        }
        let mut scored: Vec<(f64, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, (name, weight))| (score(name, *weight, blob), i))
            .collect();
        scored.sort_by(|(sa, a), (sb, b)| {
            sb.total_cmp(sa)
                .then_with(|| self.nodes[*a].0.cmp(&self.nodes[*b].0))
        });
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// The index of the blob's home endpoint.
    pub fn home(&self, blob: &BlobHash) -> Option<usize> {
        self.rank(blob).first().copied()
    }
}

/// The uniform draw `u` in (0, 1) for (endpoint name, blob): see the module docs.
pub fn unit(name: &str, blob: &BlobHash) -> f64 {
    let mut h = Sha256::new();
    h.update((name.len() as u64).to_be_bytes());
    h.update(name.as_bytes());
    h.update(blob.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let bits = u64::from_be_bytes(first) >> 11;
    (bits as f64 + 0.5) / (1u64 << 53) as f64
}

/// Weighted HRW score of one endpoint for one blob: `-weight / ln(u)`.
pub fn score(name: &str, weight: f64, blob: &BlobHash) -> f64 {
    -weight / unit(name, blob).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n: u32) -> Vec<BlobHash> {
        (0..n).map(|i| BlobHash::of(&i.to_le_bytes())).collect()
    }

    fn pool(names: &[&str]) -> Ranking {
        Ranking::new(names.iter().map(|n| (n.to_string(), 1.0)))
    }

    fn homes(r: &Ranking, names: &[&str], keys: &[BlobHash]) -> Vec<String> {
        keys.iter()
            .map(|k| names[r.home(k).unwrap()].to_string())
            .collect()
    }

    /// The documented formula pinned to fixed values: a change to the hash (which would make
    /// edges of different versions disagree on homes) fails here.
    #[test]
    fn the_hash_is_pinned() {
        let blob = BlobHash::of(b"prism-lite");
        assert_eq!(unit("http://r1:5569", &blob), 0.2034205079101991);
        let names = ["http://r1:5569", "http://r2:5569", "http://r3:5569"];
        let r = pool(&names);
        let homes: String = (0u32..16)
            .map(|i| {
                let home = r.home(&BlobHash::of(&i.to_le_bytes())).unwrap();
                char::from(b'1' + home as u8)
            })
            .collect();
        assert_eq!(
            homes, "1212211133123322",
            "golden homes changed: edges of different versions would disagree"
        );
    }

    #[test]
    fn list_order_does_not_change_homes() {
        let keys = blobs(500);
        let a = ["a:1", "b:1", "c:1", "d:1"];
        let b = ["c:1", "a:1", "d:1", "b:1"];
        assert_eq!(homes(&pool(&a), &a, &keys), homes(&pool(&b), &b, &keys));
    }

    #[test]
    fn shares_are_even_and_adding_one_moves_about_one_in_n_plus_one() {
        let keys = blobs(20_000);
        let three = ["r1", "r2", "r3"];
        let four = ["r1", "r2", "r3", "r4"];
        let before = homes(&pool(&three), &three, &keys);
        let after = homes(&pool(&four), &four, &keys);
        for name in three {
            let share = before.iter().filter(|h| *h == name).count() as f64 / 20_000.0;
            assert!((share - 1.0 / 3.0).abs() < 0.02, "{name}: {share}");
        }
        let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
        let fraction = moved.len() as f64 / 20_000.0;
        assert!((fraction - 0.25).abs() < 0.02, "moved {fraction}");
        assert!(
            moved.iter().all(|(_, a)| *a == "r4"),
            "a key only ever moves to the new endpoint"
        );
    }

    #[test]
    fn removing_one_moves_only_its_keys() {
        let keys = blobs(10_000);
        let four = ["r1", "r2", "r3", "r4"];
        let three = ["r1", "r2", "r4"];
        let before = homes(&pool(&four), &four, &keys);
        let after = homes(&pool(&three), &three, &keys);
        for (b, a) in before.iter().zip(&after) {
            if b != "r3" {
                assert_eq!(b, a, "a key of a surviving endpoint moved");
            }
        }
        // And the failover order is exactly the ranking without the removed endpoint.
        let r4 = pool(&four);
        for k in &keys[..200] {
            let without: Vec<&str> = r4
                .rank(k)
                .into_iter()
                .map(|i| four[i])
                .filter(|n| *n != "r3")
                .collect();
            let r3 = pool(&three);
            let direct: Vec<&str> = r3.rank(k).into_iter().map(|i| three[i]).collect();
            assert_eq!(without, direct);
        }
    }

    #[test]
    fn weights_set_proportions() {
        let keys = blobs(30_000);
        let r = Ranking::new([
            ("a".to_string(), 1.0),
            ("b".to_string(), 2.0),
            ("c".to_string(), 1.0),
        ]);
        let mut count = [0usize; 3];
        for k in &keys {
            count[r.home(k).unwrap()] += 1;
        }
        let share = |i: usize| count[i] as f64 / keys.len() as f64;
        assert!((share(0) - 0.25).abs() < 0.015, "{count:?}");
        assert!((share(1) - 0.50).abs() < 0.015, "{count:?}");
        assert!((share(2) - 0.25).abs() < 0.015, "{count:?}");
    }
}
