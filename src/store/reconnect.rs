//! The one retry of a remote that reuses connections (`peer`'s idle pool, `http3`'s shared QUIC
//! connection): an attempt whose *reused* connection turns out to be dead before the remote
//! answered is made once more, on a fresh connection.
//!
//! Why once, and only then: a connection that sat idle may have been closed by the remote
//! (idle timeout, restart) without us noticing until we used it, so that failure says nothing
//! about the remote and a fresh connection very likely works; the caller should not pay for our
//! reuse. A fresh connection that fails, or a second failure, does say something about the
//! remote, and retrying it would only double the wait before the caller hears so (the store's
//! deadline bounds both attempts together). Anything that happened *after* the remote answered
//! (a bad blob, a protocol error) is never retried: asking again would not change the answer.

use std::future::Future;

use crate::store::StoreError;

/// Why one attempt failed, and whether a retry on a new connection can help.
pub struct Failure {
    pub error: StoreError,
    /// The (reused) connection was found dead before the remote answered: one retry on a fresh
    /// connection may succeed where this one could not.
    pub connection_died: bool,
}

impl Failure {
    /// A failure that a fresh connection may fix.
    pub fn connection_died(error: StoreError) -> Failure {
        Failure {
            error,
            connection_died: true,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure {
            error,
            connection_died: false,
        }
    }
}

/// Where an attempt's connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Used before (taken from an idle pool, or shared): it may have died while we were not
    /// looking.
    Reused,
    /// Made for this request.
    Fresh,
}

/// Runs `attempt` on `first`; if it fails because `first` was a reused connection that had died,
/// runs it once more on the connection `reconnect` gives. Returns the first success or the last
/// failure's error. `store` names the store in the debug line a retry leaves.
pub async fn retry_once_if_dead<C, T, Connecting, Attempt>(
    store: &str,
    first: (C, Reuse),
    reconnect: impl FnOnce() -> Connecting,
    mut attempt: impl FnMut(C) -> Attempt,
) -> Result<T, StoreError>
where
    Connecting: Future<Output = Result<C, StoreError>>,
    Attempt: Future<Output = Result<T, Failure>>,
{
    let (conn, reuse) = first;
    match attempt(conn).await {
        Ok(value) => Ok(value),
        Err(f) if f.connection_died && reuse == Reuse::Reused => {
            tracing::debug!(store, error = %f.error, "reused connection was dead; retrying once on a fresh one");
            attempt(reconnect().await?).await.map_err(|f| f.error)
        }
        Err(f) => Err(f.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn dead() -> Failure {
        Failure::connection_died(StoreError::unavailable("s", "connection reset"))
    }

    /// Runs the rule with attempts that fail as `outcomes` say, in order; returns the result and
    /// how many attempts and reconnects were made.
    async fn run(reuse: Reuse, outcomes: &[fn() -> Failure]) -> (bool, usize, usize) {
        let (attempts, reconnects) = (Cell::new(0), Cell::new(0));
        let result = retry_once_if_dead(
            "s",
            ((), reuse),
            || async {
                reconnects.set(reconnects.get() + 1);
                Ok(())
            },
            |()| {
                let n = attempts.get();
                attempts.set(n + 1);
                let outcome = outcomes.get(n).map(|fail| fail());
                async move { outcome.map_or(Ok(()), Err) }
            },
        )
        .await;
        (result.is_ok(), attempts.get(), reconnects.get())
    }

    #[tokio::test]
    async fn a_dead_reused_connection_is_retried_once_on_a_fresh_one() {
        assert_eq!(run(Reuse::Reused, &[dead]).await, (true, 2, 1));
        assert_eq!(run(Reuse::Reused, &[dead, dead]).await, (false, 2, 1));
    }

    #[tokio::test]
    async fn fresh_connections_and_other_failures_are_not_retried() {
        assert_eq!(run(Reuse::Fresh, &[dead]).await, (false, 1, 0));
        let answered = || Failure::from(StoreError::NotFound);
        assert_eq!(run(Reuse::Reused, &[answered]).await, (false, 1, 0));
        assert_eq!(run(Reuse::Reused, &[]).await, (true, 1, 0));
    }
}
