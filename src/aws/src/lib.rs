//! # vidinfer-aws
//!
//! The AWS edge of vidinfer, below the front doors and beside the engine (which never
//! sees it): what talks to S3 and SNS, and how their errors are sorted.
//!
//! # Layout
//! - [`aws`]: SDK configuration (endpoint overrides for moto), error classification
//!   (transient or permanent), retries with backoff.
//! - [`storage`]: S3 locations, bounded downloads to temp files, uploads.
//! - [`notify`]: SageMaker's `InferenceResult` notifications on SNS.

pub mod aws;
pub mod notify;
pub mod storage;
