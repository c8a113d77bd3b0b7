//! # vidinfer
//!
//! An asynchronous video inference engine: a request names a video, the engine decodes
//! it with FFmpeg, samples frames, runs them through a TorchScript Mask R-CNN and
//! returns detections as JSON.
//!
//! # Layout
//! - [`video`]: streaming decode and frame sampling (FFmpeg), with input limits and a
//!   format allow-list.
//! - [`model`]: the model thread that owns the TorchScript module (LibTorch via `tch`).
//! - [`pipeline`]: the engine: one job = decode → batch → model → assemble.
//! - [`schema`]: the `vidinfer/v2` document and the legacy array, written and read.
//! - [`request`]: inference requests (SQS message bodies, custom attributes).
//! - [`storage`]: S3 locations, downloads and uploads.
//! - [`notify`]: SageMaker's `InferenceResult` notifications on SNS.
//! - [`queue`]: the SQS-driven worker that ties them together.
//! - [`aws`]: SDK configuration and error classification; [`metrics`]: Prometheus text.
//! - [`fuzz`]: entry points shared by the fuzz targets and their regression tests.
//!
//! The front doors (`vidinfer-worker run | serve | sqs`) live in `worker/`; `gifgen/`
//! draws detections onto the video.

pub mod aws;
pub mod fuzz;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod queue;
pub mod request;
pub mod schema;
pub mod server;
pub mod storage;
pub mod video;
