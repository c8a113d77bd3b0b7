//! Load shapes: when each request is sent. Open-loop shapes are a fixed schedule (the
//! arrival rate does not care how the deployment copes, as real clients don't);
//! the closed loop keeps a number of requests outstanding and sends the next one only
//! when one completes.

use std::fmt;
use std::time::Duration;

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// `size` requests at once every `every` (size = all: the old notebook's loop of
    /// `invoke_endpoint_async` calls).
    Burst { size: usize, every: Duration },
    /// A steady `per_s` requests per second.
    Rate { per_s: f64 },
    /// `per_s` for `after`, then `then_per_s`: a sudden change of load.
    Step {
        per_s: f64,
        after: Duration,
        then_per_s: f64,
    },
    /// `concurrency` requests outstanding at any time.
    Closed { concurrency: usize },
}

impl Shape {
    /// Send offsets from the start for `count` requests; `None` for the closed loop,
    /// whose timing depends on completions.
    pub fn schedule(&self, count: usize) -> Option<Vec<Duration>> {
        let secs = Duration::from_secs_f64;
        match *self {
            Shape::Burst { size, every } => {
                let size = if size == 0 { count.max(1) } else { size };
                Some(
                    (0..count)
                        .map(|i| every * u32::try_from(i / size).unwrap_or(u32::MAX))
                        .collect(),
                )
            }
            Shape::Rate { per_s } => Some((0..count).map(|i| secs(i as f64 / per_s)).collect()),
            Shape::Step {
                per_s,
                after,
                then_per_s,
            } => {
                // Requests the first phase holds: those whose offset is before `after`.
                let first = ((after.as_secs_f64() * per_s).ceil() as usize).min(count);
                let mut out: Vec<Duration> = (0..first).map(|i| secs(i as f64 / per_s)).collect();
                out.extend((0..count - first).map(|j| after + secs(j as f64 / then_per_s)));
                Some(out)
            }
            Shape::Closed { .. } => None,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Burst { size: 0, .. } => write!(f, "burst (all at once)"),
            Shape::Burst { size, every } => {
                write!(f, "bursts of {size} every {} s", every.as_secs_f64())
            }
            Shape::Rate { per_s } => write!(f, "open loop, {per_s}/s"),
            Shape::Step {
                per_s,
                after,
                then_per_s,
            } => write!(
                f,
                "step: {per_s}/s, after {} s {then_per_s}/s",
                after.as_secs_f64()
            ),
            Shape::Closed { concurrency } => write!(f, "closed loop, {concurrency} outstanding"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[Duration]) -> Vec<f64> {
        v.iter().map(|d| d.as_secs_f64()).collect()
    }

    #[test]
    fn a_burst_sends_everything_at_once_or_in_waves() {
        let all = Shape::Burst {
            size: 0,
            every: Duration::from_secs(60),
        };
        assert_eq!(secs(&all.schedule(3).unwrap()), [0.0, 0.0, 0.0]);
        let waves = Shape::Burst {
            size: 2,
            every: Duration::from_secs(10),
        };
        assert_eq!(
            secs(&waves.schedule(5).unwrap()),
            [0.0, 0.0, 10.0, 10.0, 20.0]
        );
    }

    #[test]
    fn a_rate_spaces_requests_evenly() {
        let r = Shape::Rate { per_s: 4.0 };
        assert_eq!(secs(&r.schedule(4).unwrap()), [0.0, 0.25, 0.5, 0.75]);
    }

    #[test]
    fn a_step_changes_rate_at_its_time() {
        let s = Shape::Step {
            per_s: 1.0,
            after: Duration::from_secs(3),
            then_per_s: 2.0,
        };
        assert_eq!(
            secs(&s.schedule(6).unwrap()),
            [0.0, 1.0, 2.0, 3.0, 3.5, 4.0]
        );
        // Fewer requests than the first phase holds: the step never comes.
        assert_eq!(secs(&s.schedule(2).unwrap()), [0.0, 1.0]);
    }

    #[test]
    fn the_closed_loop_has_no_schedule() {
        assert!(Shape::Closed { concurrency: 4 }.schedule(10).is_none());
    }
}
