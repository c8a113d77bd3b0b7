//! # vidinfer
//!
//! An asynchronous video inference engine: a request names a video, the engine decodes
//! it with FFmpeg, samples frames, runs them through a TorchScript Mask R-CNN and
//! returns detections as JSON.
//!
//! # Layout
//! The workspace's crates follow the layers; a crate uses only those below it.
//! ```text
//!  worker/ (vidinfer-worker: run · serve · sqs)     gifgen/ (annotated GIF)
//!        │                                              │
//!  vidinfer (this crate)                                │
//!    front-door libraries: sqs (loop · lease · outcome), http (SageMaker BYOC), metrics
//!    engine: params → pipeline (decode ─► batches ─► model thread ─► assemble)
//!        │                     │                        │
//!  vidinfer-aws (src/aws/): aws · storage · notify      │
//!  vidinfer-media (src/media/): video · detection · schema   ◄───┘
//! ```
//! - [`params`]: a job's parameters and the one validator for them, whichever door
//!   they come through (flags, custom attributes, an SQS message's `params`).
//! - [`model`]: the model thread that owns the TorchScript module (LibTorch via `tch`).
//! - [`pipeline`]: the engine and its one job path, [`pipeline::Engine::process_file`]:
//!   a local video file and params in, the finished document and stats out. It knows
//!   nothing of HTTP, SQS or SNS.
//! - [`request`]: the SQS message body (mirroring `InvokeEndpointAsync`).
//! - [`sqs`]: the SQS-driven worker: receive/drain loop, [`sqs::lease::Lease`],
//!   [`sqs::outcome::OutcomeStep`].
//! - [`http`]: SageMaker's container contract (`/ping`, `/invocations`).
//! - [`metrics`]: Prometheus text for both front doors; [`runtime`]: their tokio
//!   runtime.
//! - Re-exported from the layers below, so one path names each: [`video`],
//!   [`detection`], [`schema`], [`track`] (vidinfer-media), [`aws`], [`storage`], [`notify`]
//!   (vidinfer-aws).
//!
//! The binaries (`vidinfer-worker run | serve | sqs | probe`) live in `worker/` and are
//! thin: flags to a typed config, then a call into this crate.

pub use vidinfer_aws::{aws, notify, storage};
pub use vidinfer_media::{cli, detection, schema, track, video};

pub mod http;
pub mod metrics;
pub mod model;
pub mod params;
pub mod pipeline;
pub mod request;
pub mod runtime;
pub mod sqs;
