//! What the admin service's background loops (the status hub, the presence
//! index keeper) do with their store calls: each has a deadline, so a store
//! that hangs (a blackholed network, a lock held for long) fails one attempt
//! instead of wedging the loop; failed attempts are retried after a delay
//! that grows while the failures go on.
//!
//! Redis calls already have the Redis client's timeout; PostgreSQL queries
//! only have the pool's wait for a connection, hence `within`.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::error::AdminError;

/// The longest one store call of a background loop may take. Generous, as
/// the first full reads are large; a call that takes longer is stuck.
pub const STORE_CALL_DEADLINE: Duration = Duration::from_secs(10);
/// The first delay after a failure; it doubles with each failure after.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);

/// `call`, failing with `TimedOut` if it outlives `STORE_CALL_DEADLINE`.
pub async fn within<T>(
    what: &'static str,
    call: impl Future<Output = Result<T, AdminError>>,
) -> Result<T, AdminError> {
    tokio::time::timeout(STORE_CALL_DEADLINE, call)
        .await
        .unwrap_or(Err(AdminError::TimedOut(what, STORE_CALL_DEADLINE)))
}

/// The delays between retries: exponential, capped, reset by a success.
#[derive(Debug)]
pub struct Retry {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    longest: Duration,
}

impl Retry {
    pub fn new(longest: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(FIRST_RETRY_DELAY.min(longest))
            .with_max_delay(longest)
            .without_max_times();
        Self {
            builder,
            delays: builder.build(),
            longest,
        }
    }

    /// How long to wait after one more failure.
    pub fn failed(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.longest)
    }

    pub fn succeeded(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap_and_restart_after_a_success() {
        let mut retry = Retry::new(Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| retry.failed().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        retry.succeeded();
        assert_eq!(retry.failed(), Duration::from_secs(1));
    }
}
