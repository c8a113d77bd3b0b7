//! The scaling rule of KEDA's `aws-sqs-queue` scaler feeding a Kubernetes HPA, as pure
//! functions, so the local fleet scales the way `docker/k8s/worker.yaml` scales in
//! production and the rule can be tested without a clock.
//!
//! - metric: `ApproximateNumberOfMessages` + `ApproximateNumberOfMessagesNotVisible`
//!   (the scaler's `scaleOnInFlight`, default true: jobs being processed keep their
//!   replica);
//! - active when metric > `activationQueueLength` (default 0): only then does KEDA wake
//!   the deployment from zero;
//! - HPA: desired = ceil(metric / `queueLength`) clamped to [min, max] (at least 1 while
//!   active);
//! - scale-up at once; scale-down only to the highest recommendation of the last
//!   cooldown window (HPA's `scaleDown.stabilizationWindowSeconds`, and KEDA's
//!   `cooldownPeriod` for the last step to zero).
//!
//! Left out on purpose, to keep the rule readable in a chart: the HPA's 10% tolerance
//! (there a metric within 10% of replicas × queueLength changes nothing: 11 messages
//! keep 2 replicas at queueLength 5, where this rule makes 3) and KEDA's two-step
//! wake-up (KEDA sets 1 replica, the HPA raises it on its next sync), which happens in
//! one tick here.

use std::collections::VecDeque;
use std::time::Duration;

/// The trigger's and the HPA's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Messages per replica (`queueLength`, KEDA's default 5). Never 0.
    pub queue_length: u64,
    /// The metric must exceed this for the deployment to be active
    /// (`activationQueueLength`, default 0).
    pub activation_queue_length: u64,
    /// `minReplicaCount`: 0 lets the fleet scale to zero when idle.
    pub min_replicas: u32,
    /// `maxReplicaCount`.
    pub max_replicas: u32,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            queue_length: 5,
            activation_queue_length: 0,
            min_replicas: 0,
            max_replicas: 3,
        }
    }
}

/// The scaler's metric for a queue's (visible, not visible) message counts.
pub fn metric(visible: u64, not_visible: u64, scale_on_in_flight: bool) -> u64 {
    if scale_on_in_flight {
        visible + not_visible
    } else {
        visible
    }
}

/// Replicas wanted for `metric` right now, before any stabilization.
pub fn recommend(rule: &Rule, metric: u64) -> u32 {
    let active = metric > rule.activation_queue_length;
    if !active {
        return rule.min_replicas;
    }
    let per = rule.queue_length.max(1);
    let wanted = metric.div_ceil(per).min(u64::from(u32::MAX)) as u32;
    wanted.clamp(rule.min_replicas.max(1), rule.max_replicas.max(1))
}

/// The rule with its memory: the recommendations of the last cooldown window.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    rule: Rule,
    cooldown: Duration,
    recent: VecDeque<(Duration, u32)>,
    current: u32,
}

impl Autoscaler {
    /// Starts at `min_replicas`, as a freshly applied ScaledObject does.
    pub fn new(rule: Rule, cooldown: Duration) -> Autoscaler {
        Autoscaler {
            rule,
            cooldown,
            recent: VecDeque::new(),
            current: rule.min_replicas,
        }
    }

    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Replicas currently wanted.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// One polling tick at `now` (time since the start of the run) with the scaler's
    /// metric; returns the replicas to run from now on.
    pub fn tick(&mut self, now: Duration, metric: u64) -> u32 {
        let rec = recommend(&self.rule, metric);
        self.recent.push_back((now, rec));
        while let Some(&(t, _)) = self.recent.front() {
            if now.saturating_sub(t) > self.cooldown {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.current = if rec >= self.current {
            rec
        } else {
            // Scale down only as far as every recommendation of the window allows.
            let highest = self.recent.iter().map(|&(_, r)| r).max().unwrap_or(rec);
            highest.min(self.current)
        };
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_metric_counts_in_flight_messages_by_default() {
        assert_eq!(metric(7, 3, true), 10);
        assert_eq!(metric(7, 3, false), 7);
    }

    #[test]
    fn recommendations_are_ceil_of_metric_over_target_within_bounds() {
        let rule = Rule {
            queue_length: 5,
            activation_queue_length: 0,
            min_replicas: 0,
            max_replicas: 4,
        };
        assert_eq!(recommend(&rule, 0), 0, "idle: scale to zero");
        assert_eq!(recommend(&rule, 1), 1, "one message wakes a replica");
        assert_eq!(recommend(&rule, 5), 1);
        assert_eq!(recommend(&rule, 6), 2);
        assert_eq!(recommend(&rule, 20), 4);
        assert_eq!(recommend(&rule, 1000), 4, "clamped to max");
        let floor = Rule {
            min_replicas: 2,
            ..rule
        };
        assert_eq!(recommend(&floor, 0), 2);
        assert_eq!(recommend(&floor, 3), 2);
        let lazy = Rule {
            activation_queue_length: 3,
            ..rule
        };
        assert_eq!(
            recommend(&lazy, 3),
            0,
            "at the activation threshold: inactive"
        );
        assert_eq!(recommend(&lazy, 4), 1);
    }

    #[test]
    fn a_zero_target_is_treated_as_one_message_per_replica() {
        let rule = Rule {
            queue_length: 0,
            ..Rule::default()
        };
        assert_eq!(recommend(&rule, 2), 2);
    }

    #[test]
    fn scales_out_at_once_and_in_only_after_the_cooldown() {
        let rule = Rule {
            queue_length: 2,
            activation_queue_length: 0,
            min_replicas: 0,
            max_replicas: 3,
        };
        let mut a = Autoscaler::new(rule, s(10));
        assert_eq!(a.tick(s(0), 0), 0);
        assert_eq!(a.tick(s(1), 1), 1, "scale from zero");
        assert_eq!(a.tick(s(2), 30), 3, "scale out without waiting");
        assert_eq!(a.tick(s(5), 3), 3, "2 wanted, but 3 were wanted 3 s ago");
        assert_eq!(a.tick(s(12), 3), 3, "the 3 of t=2 is still in the window");
        assert_eq!(
            a.tick(s(13), 3),
            2,
            "window passed: down to the highest of it"
        );
        assert_eq!(a.tick(s(14), 0), 2);
        assert_eq!(a.tick(s(23), 0), 2, "t=13 recommended 2");
        assert_eq!(a.tick(s(24), 0), 0, "cooldown after the last active tick");
        assert_eq!(a.tick(s(25), 4), 2, "and up again");
    }

    #[test]
    fn never_leaves_min_and_max() {
        let rule = Rule {
            queue_length: 1,
            activation_queue_length: 0,
            min_replicas: 1,
            max_replicas: 2,
        };
        let mut a = Autoscaler::new(rule, s(0));
        assert_eq!(a.current(), 1);
        assert_eq!(a.tick(s(0), 0), 1);
        assert_eq!(a.tick(s(1), 50), 2);
        assert_eq!(a.tick(s(2), 0), 1, "zero cooldown: down at once, to min");
    }
}
