//! The one retry policy: how many times an operation the engine may refuse for a moment is tried, and how long orch
//! waits between tries (exponential backoff). Removals racing a container's exit, name conflicts with a leftover
//! being removed, subnets another engine user took first and Swarm's "update out of sequence" all retry through it.

use std::time::Duration;

/// `attempts` tries in all; the wait before try `n + 1` is `first × factorⁿ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: usize,
    pub first: Duration,
    pub factor: u32,
}

impl Backoff {
    /// A removal the engine refuses while a container is still stopping: 4 tries over ~0.7 s.
    pub const REMOVAL: Backoff = Backoff { attempts: 4, first: Duration::from_millis(100), factor: 2 };
    /// A name taken by a leftover orch is removing: 4 tries over ~1.4 s.
    pub const CONFLICT: Backoff = Backoff { attempts: 4, first: Duration::from_millis(200), factor: 2 };
    /// Swarm moved a service on between a read and a write: 10 quick tries.
    pub const SEQUENCE: Backoff = Backoff { attempts: 10, first: Duration::from_millis(50), factor: 1 };

    /// The wait after failed try `attempt` (0-based), before the next one.
    pub fn delay(&self, attempt: usize) -> Duration {
        let factor = self.factor.saturating_pow(u32::try_from(attempt).unwrap_or(u32::MAX));
        self.first.saturating_mul(factor)
    }

    /// Whether a failed try `attempt` (0-based) is followed by another.
    pub fn again(&self, attempt: usize) -> bool {
        attempt + 1 < self.attempts
    }

    /// Runs `op` (given the 0-based try) until it succeeds, fails with an error `retryable` does not accept, or the
    /// tries run out (then the last error is returned).
    pub async fn run<T, E: std::fmt::Display>(&self, mut op: impl AsyncFnMut(usize) -> Result<T, E>, retryable: impl Fn(&E) -> bool) -> Result<T, E> {
        let mut attempt = 0;
        loop {
            match op(attempt).await {
                Err(e) if self.again(attempt) && retryable(&e) => {
                    let wait = self.delay(attempt);
                    tracing::debug!(try_ = attempt + 1, of = self.attempts, ?wait, "{e}: trying again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_factor_and_never_overflow() {
        let b = Backoff { attempts: 4, first: Duration::from_millis(100), factor: 2 };
        assert_eq!((0..3).map(|a| b.delay(a).as_millis()).collect::<Vec<_>>(), [100, 200, 400]);
        assert_eq!(Backoff::SEQUENCE.delay(7), Duration::from_millis(50));
        assert!(b.delay(usize::MAX) >= Duration::from_secs(1));
        assert!(b.again(2) && !b.again(3));
    }

    #[tokio::test(start_paused = true)]
    async fn run_stops_at_success_at_a_final_error_or_after_the_last_try() {
        let b = Backoff { attempts: 3, first: Duration::from_millis(10), factor: 2 };
        let mut tries = 0;
        let r: Result<usize, &str> = b
            .run(
                async |a| {
                    if a < 1 {
                        tries += 1;
                        Err("busy")
                    } else {
                        Ok(a)
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!((r, tries), (Ok(1), 1));
        let mut tries = 0;
        let r: Result<(), &str> = b
            .run(
                async |_| {
                    tries += 1;
                    Err("busy")
                },
                |_| true,
            )
            .await;
        assert_eq!((r, tries), (Err("busy"), 3));
        let mut tries = 0;
        let r: Result<(), &str> = b
            .run(
                async |_| {
                    tries += 1;
                    Err("gone")
                },
                |e| *e != "gone",
            )
            .await;
        assert_eq!((r, tries), (Err("gone"), 1));
    }
}
