//! A received message's lease on the queue.
//!
//! Between receive and delete, SQS hides a message for its visibility timeout; the
//! [`Lease`] owns that message's receipt handle and is the only code that touches it:
//! it extends the visibility while the job runs ([`Lease::keep_alive`]), hands the
//! message back at once at shutdown ([`Lease::release`]), defers it after a transient
//! failure by one backoff policy ([`Lease::defer`]), or deletes it once the outcome is
//! stored and notified ([`Lease::delete`]). Releasing, deferring and deleting consume
//! the lease, so a message is settled exactly once.

use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::warn;

use crate::aws::{classify, retry};

/// Longest a deferred message stays invisible (SQS allows 12 hours; a message retried
/// this late is better sent to the dead-letter queue by the redrive policy).
pub const MAX_DEFER_S: i32 = 900;

/// How long a message stays invisible after its `receive_count`-th transient failure:
/// `base_s` times the number of receives so far, at most [`MAX_DEFER_S`].
pub fn defer_seconds(base_s: i32, receive_count: i64) -> i32 {
    (i64::from(base_s) * receive_count.max(1)).min(i64::from(MAX_DEFER_S)) as i32
}

/// What every lease of one queue shares.
#[derive(Debug, Clone)]
pub struct LeasePolicy {
    pub queue_url: String,
    /// Visibility timeout set on receive and renewed by [`Lease::keep_alive`].
    pub visibility_timeout_s: i32,
    /// The base of [`defer_seconds`].
    pub retry_backoff_s: i32,
    /// Attempts at deleting before the message is left to be redelivered.
    pub delete_attempts: u32,
}

/// One received message's receipt. See the module documentation.
pub struct Lease {
    sqs: aws_sdk_sqs::Client,
    policy: LeasePolicy,
    receipt: String,
    receive_count: i64,
}

impl Lease {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        policy: LeasePolicy,
        receipt: String,
        receive_count: i64,
    ) -> Lease {
        Lease {
            sqs,
            policy,
            receipt,
            receive_count,
        }
    }

    /// Set the message's visibility timeout to `seconds` from now.
    async fn set_visibility(&self, seconds: i32) -> bool {
        set_visibility(&self.sqs, &self.policy.queue_url, &self.receipt, seconds).await
    }

    /// Renew the visibility every `every` until the returned guard is stopped or
    /// dropped, so a job longer than the visibility timeout is not redelivered.
    pub fn keep_alive(&self, every: Duration) -> KeepAlive {
        let stop = CancellationToken::new();
        let (sqs, queue, receipt) = (
            self.sqs.clone(),
            self.policy.queue_url.clone(),
            self.receipt.clone(),
        );
        let vis = self.policy.visibility_timeout_s;
        let task = tokio::spawn(heartbeat(every, stop.clone(), move || {
            let (sqs, queue, receipt) = (sqs.clone(), queue.clone(), receipt.clone());
            async move { set_visibility(&sqs, &queue, &receipt, vis).await }
        }));
        KeepAlive {
            stop: stop.drop_guard(),
            task,
        }
    }

    /// Hand the message back now (visibility 0), untouched, for another worker.
    pub async fn release(self) {
        self.set_visibility(0).await;
    }

    /// Leave the message for redelivery after [`defer_seconds`].
    pub async fn defer(self) {
        let s = defer_seconds(self.policy.retry_backoff_s, self.receive_count);
        self.set_visibility(s).await;
    }

    /// Delete the message: its outcome is stored and notified. A failure is logged; the
    /// message then comes back and is processed again (outputs are idempotent).
    pub async fn delete(self) -> bool {
        let r = retry(
            self.policy.delete_attempts,
            |_: &String| true,
            || async {
                self.sqs
                    .delete_message()
                    .queue_url(&self.policy.queue_url)
                    .receipt_handle(&self.receipt)
                    .send()
                    .await
                    .map_err(|e| classify(&e).1)
            },
        )
        .await;
        if let Err(e) = &r {
            warn!("deleting the message failed; it will be redelivered and processed again: {e}");
        }
        r.is_ok()
    }
}

async fn set_visibility(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipt: &str,
    seconds: i32,
) -> bool {
    sqs.change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(receipt)
        .visibility_timeout(seconds)
        .send()
        .await
        .map_err(|e| warn!("changing visibility failed: {}", classify(&e).1))
        .is_ok()
}

/// A running [`Lease::keep_alive`]; stop it before settling the lease.
/// Dropping it stops the renewals too.
pub struct KeepAlive {
    stop: DropGuard,
    task: tokio::task::JoinHandle<u32>,
}

impl KeepAlive {
    /// Stop renewing and wait until no renewal is in flight.
    pub async fn stop(self) {
        drop(self.stop);
        let _ = self.task.await;
    }
}

/// Renew a message's visibility every `every` until `stop` is cancelled, by calling
/// `extend` (which returns false when the renewal failed). Returns how many renewals
/// were made. Generic so its timing can be tested with a paused clock.
pub async fn heartbeat<F, Fut>(every: Duration, stop: CancellationToken, mut extend: F) -> u32
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut n = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return n,
            _ = tokio::time::sleep(every) => {}
        }
        if !extend().await {
            warn!("could not extend the message's visibility; it may be redelivered");
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn deferral_grows_with_receives_and_is_capped() {
        assert_eq!(defer_seconds(5, 0), 5);
        assert_eq!(defer_seconds(5, 1), 5);
        assert_eq!(defer_seconds(5, 3), 15);
        assert_eq!(defer_seconds(5, 1_000), MAX_DEFER_S);
        assert_eq!(defer_seconds(0, 7), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_renews_on_schedule_and_stops_when_told() {
        let calls = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let c = calls.clone();
        let task = tokio::spawn(heartbeat(
            Duration::from_secs(30),
            stop.clone(),
            move || {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    true
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "nothing before the first interval"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 11);
        stop.cancel();
        assert_eq!(task.await.unwrap(), 11);
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 11, "no renewals after stop");
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_keeps_going_when_a_renewal_fails() {
        let calls = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let c = calls.clone();
        let task = tokio::spawn(heartbeat(
            Duration::from_secs(10),
            stop.clone(),
            move || {
                let c = c.clone();
                async move { c.fetch_add(1, Ordering::SeqCst) % 2 == 0 }
            },
        ));
        tokio::time::sleep(Duration::from_secs(55)).await;
        stop.cancel();
        assert_eq!(task.await.unwrap(), 5);
    }
}
