//! Waiting for AWS: deadlines, the pause between two looks, and the look-decide-pause loop.
//!
//! Every wait in the provider pauses the same way: a second between looks at first, then a tenth of the
//! time waited so far, up to the caller's ceiling. However long AWS takes, the last look comes at most a
//! tenth of the wait (or a second) after the awaited state was reached, so a wait never stretches what
//! users wait for by more than about 10%, and on average by half that. The number of looks grows only
//! with the logarithm of the wait until the ceiling (seconds for a mount target, tens of seconds for a
//! database or a deployment) keeps long waits far below AWS's throttling limits. Doubling pauses, as
//! terraform-provider-aws's state-change waiters use, can overshoot by the whole last pause: up to the
//! ceiling after a wait of a few ceilings, which is most of a short wait.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{AwsError, AwsResult};

/// The shortest pause between two looks.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The pause as a share of the time waited so far (1/10): the most a wait overshoots the awaited state.
const PAUSE_DIVISOR: u32 = 10;

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

/// The pauses between looks: a second, then a tenth of the time waited so far, up to a ceiling, never past
/// a deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    started: Instant,
    ceiling: Duration,
}

impl Backoff {
    /// Pauses from one second up to `ceiling`, counted from now (a zero ceiling never pauses: for tests).
    pub fn up_to(ceiling: Duration) -> Backoff {
        Backoff { started: Instant::now(), ceiling }
    }

    /// The next pause, cut short so the last look happens at `deadline` rather than after it.
    pub fn pause_before(&self, deadline: Instant) -> Duration {
        let share = self.started.elapsed() / PAUSE_DIVISOR;
        share.max(FIRST_PAUSE).min(self.ceiling).min(remaining(deadline))
    }

    /// Sleeps for the next pause (see [`Backoff::pause_before`]).
    pub async fn sleep_before(&self, deadline: Instant) {
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
    let backoff = Backoff::up_to(ceiling);
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
    async fn pauses_grow_with_the_time_waited_up_to_the_ceiling_and_stop_at_the_deadline() {
        let deadline = deadline_after(Duration::from_secs(400));
        let backoff = Backoff::up_to(Duration::from_secs(15));
        let mut looks = vec![Duration::ZERO];
        while remaining(deadline) > Duration::ZERO {
            tokio::time::advance(backoff.pause_before(deadline)).await;
            looks.push(backoff.started.elapsed());
        }
        let pauses: Vec<Duration> = looks.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(pauses[..10].iter().all(|p| *p == FIRST_PAUSE), "a second apart at first: {pauses:?}");
        assert!(pauses.iter().all(|p| *p <= Duration::from_secs(15)), "never past the ceiling: {pauses:?}");
        let before_the_last = &pauses[..pauses.len() - 1];
        assert!(before_the_last.windows(2).all(|w| w[0] <= w[1]), "pauses shrink before the deadline: {pauses:?}");
        // Whenever the awaited state is reached, the next look comes within a tenth of the wait, or a second,
        // until the ceiling takes over (after 150 s here).
        for done in (1..150).map(|s| Duration::from_millis(s * 1000 + 500)) {
            let seen = looks.iter().find(|t| **t >= done).expect("a look after it");
            assert!(*seen - done <= (done / 10).max(FIRST_PAUSE), "reached at {done:?}, seen at {seen:?}");
        }
        assert!(looks.len() < 70, "{} looks in 400 s: the pauses do not grow", looks.len());
        assert_eq!(*looks.last().unwrap(), Duration::from_secs(400), "the last look is at the deadline");
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
