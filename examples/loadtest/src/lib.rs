//! vidinfer's load test: send inference requests for one video in a chosen shape to a
//! deployment, observe completions the way a consumer does (the success and error SNS
//! topics, through SQS queues subscribed to them), and report per-request queue wait,
//! processing time and end-to-end latency, throughput, failures, lost requests and
//! duplicates, with a chart of the backlog and the fleet over time.
//!
//! It knows the deployment only through public AWS APIs, the `InferenceResult` JSON and
//! the `vidinfer-worker` binary, like any downstream user.
//!
//! # Layout
//!
//! - [`run`]: the driver (send, read notifications, sample, stop by itself) and the
//!   output files;
//! - [`shape`]: when requests are sent (burst, rate, step, closed loop);
//! - [`target`]: where they go (an SQS queue of workers, a SageMaker endpoint);
//! - [`notification`]: the `InferenceResult` notification, parsed with our own struct;
//! - [`observe`]: queue depth, worker count, SageMaker instance count;
//! - [`record`]: the events of a run and `events.csv`;
//! - [`summary`]: totals and percentiles, `summary.json`;
//! - [`chart`] draws `chart.png`;
//! - [`keda`]: KEDA's SQS scaling rule as pure functions;
//! - [`local`]: moto, worker processes and the autoscaler on one machine;
//! - [`remote`]: the real SQS and SageMaker deployments;
//! - [`aws`]: SDK configuration and notification-queue readers.

pub mod aws;
pub mod chart;
pub mod keda;
pub mod local;
pub mod notification;
pub mod observe;
pub mod record;
pub mod remote;
pub mod run;
pub mod shape;
pub mod summary;
pub mod target;
