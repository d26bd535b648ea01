//! Randomness for node ids, rpc ids and token secrets.

/// Random bytes from the OS. If the OS source fails (it practically never does), fall back to
/// hashing the time and a counter: ids and secrets then stay unique, if less unpredictable.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if getrandom::getrandom(&mut out).is_err() {
        use sha2::Digest;
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut seed = sha2::Sha384::new();
        seed.update(format!("{:?}", std::time::SystemTime::now()));
        seed.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let digest = seed.finalize();
        for (o, d) in out.iter_mut().zip(digest.iter().cycle()) {
            *o = *d;
        }
    }
    out
}
