//! Waiting for AWS: deadlines, the pause between two looks, and the look-decide-pause loop.
//!
//! Every wait in the provider pauses the same way: one second after the first look, then twice as long
//! each time up to the caller's ceiling. Most transitions (a mount target, a namespace operation, a
//! deleted service) end within seconds, so early looks are cheap wins; long ones (a database, a
//! deployment) settle into the ceiling, which keeps the request rate far below AWS's throttling limits.
//! terraform-provider-aws's state-change waiters back off the same way.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{AwsError, AwsResult};

/// The first pause of every wait.
const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// What one look at a resource means for the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The awaited state is reached.
    Done,
    /// Still in transition: look again later.
    Wait,
    /// It will not get there by waiting; the reason says why and what to do.
    Fail(String),
}

/// The instant `timeout` from now. A timeout too large to add (a user's `"3000000000000000h"` got past
/// validation, say) waits as good as forever instead of panicking the plugin. (Tokio's clock, so tests
/// can pause time.)
pub fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The time left until `deadline` (zero once it has passed).
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The pauses between looks: one second, then doubling up to a ceiling, never past a deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// Pauses that grow from one second to `ceiling` (a zero ceiling never pauses: for tests).
    pub fn up_to(ceiling: Duration) -> Backoff {
        Backoff { next: FIRST_PAUSE.min(ceiling), ceiling }
    }

    /// The next pause, cut short so the last look happens at `deadline` rather than after it.
    pub fn pause_before(&mut self, deadline: Instant) -> Duration {
        let pause = self.next.min(remaining(deadline));
        self.next = (self.next * 2).min(self.ceiling);
        pause
    }

    /// Sleeps for the next pause (see [`Backoff::pause_before`]).
    pub async fn sleep_before(&mut self, deadline: Instant) {
        tokio::time::sleep(self.pause_before(deadline)).await;
    }
}

/// Looks with `observe` until `decide` says done or failed, or `timeout` passes, pausing with a
/// [`Backoff`] up to `ceiling`; returns the last observation. Errors name `operation` and `what`.
/// The source of observations is injected so the loop is tested on recorded sequences.
pub async fn until<T, F, Fut, D>(
    operation: &'static str,
    what: &str,
    timeout: Duration,
    ceiling: Duration,
    mut observe: F,
    decide: D,
) -> AwsResult<T>
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = AwsResult<T>>,
    D: Fn(&T) -> Decision,
{
    let deadline = deadline_after(timeout);
    let mut backoff = Backoff::up_to(ceiling);
    loop {
        let seen = observe().await?;
        match decide(&seen) {
            Decision::Done => return Ok(seen),
            Decision::Fail(reason) => return Err(AwsError::other(operation, format!("{what}: {reason}"))),
            Decision::Wait if Instant::now() >= deadline => {
                return Err(AwsError::other(
                    operation,
                    format!("timed out after {timeout:?} waiting for {what}; last seen: {seen:?}"),
                ));
            }
            Decision::Wait => backoff.sleep_before(deadline).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_double_from_one_second_to_the_ceiling_and_stop_at_the_deadline() {
        let deadline = deadline_after(Duration::from_secs(20));
        let mut backoff = Backoff::up_to(Duration::from_secs(5));
        let pauses: Vec<u64> = (0..5).map(|_| backoff.pause_before(deadline).as_secs()).collect();
        assert_eq!(pauses, vec![1, 2, 4, 5, 5]);
        tokio::time::advance(Duration::from_secs(18)).await;
        assert_eq!(backoff.pause_before(deadline), Duration::from_secs(2), "cut to the deadline");
        assert_eq!(Backoff::up_to(Duration::ZERO).pause_before(deadline), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_returns_the_last_look_fails_on_a_dead_end_and_times_out() {
        let looks = std::cell::Cell::new(0);
        let observe = || {
            looks.set(looks.get() + 1);
            let n = looks.get();
            async move { Ok::<_, AwsError>(n) }
        };
        let done = until("Op", "thing", Duration::from_secs(60), Duration::from_secs(10), observe, |n| {
            if *n >= 3 { Decision::Done } else { Decision::Wait }
        })
        .await
        .unwrap();
        assert_eq!(done, 3);

        let failed = until(
            "Op",
            "thing",
            Duration::from_secs(60),
            Duration::ZERO,
            || async { Ok::<_, AwsError>(0) },
            |_| Decision::Fail("broken".into()),
        )
        .await
        .unwrap_err();
        assert!(failed.message.contains("thing: broken"), "{}", failed.message);

        let timed_out = until(
            "Op",
            "thing",
            Duration::from_secs(5),
            Duration::from_secs(2),
            || async { Ok::<_, AwsError>(7) },
            |_| Decision::Wait,
        )
        .await
        .unwrap_err();
        assert!(
            timed_out.message.contains("timed out after 5s waiting for thing; last seen: 7"),
            "{}",
            timed_out.message
        );
    }
}
