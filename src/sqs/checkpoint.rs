//! Checkpoints: a long job's progress saved to S3, so a request redelivered after a
//! crash, a spot reclaim or a SIGKILL resumes where the last checkpoint left it instead
//! of starting from frame 0.
//!
//! While a job runs, every `checkpoint_every` the worker stores the frames done so far
//! (their detections as the model gave them) at
//! `{output_path}/.checkpoints/{inferenceId}.json`, together with a [`Fingerprint`] of
//! what they were computed from: the input's location, ETag and size, the job's
//! parameters and the model file's fingerprint. When the same request arrives again,
//! the job resumes after those frames if the fingerprint is identical; the engine then
//! checks that the video gives exactly these frames ([`crate::pipeline::Engine::run_from`])
//! and replays them through the tracker, so the document is byte-identical to an
//! uninterrupted run's. A checkpoint is deleted once the request is settled; one that is
//! missing, unreadable, foreign or corrupt never fails a job: the job starts over, the
//! log says why, and the next checkpoint replaces it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::params::Params;
use crate::schema::FrameDetections;
use crate::storage::{S3Uri, Storage, StorageError};

/// The `schema` of a stored checkpoint.
pub const SCHEMA: &str = "vidinfer/checkpoint/1";

/// Checkpoints larger than this are not read (a long job with masks stays far below).
const MAX_CHECKPOINT_BYTES: u64 = 1 << 30;

/// What a job's frames were computed from: a checkpoint is used only when all of it is
/// identical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The input's `s3://` location.
    pub input: String,
    /// The input object's ETag (changes when the object is replaced).
    pub etag: Option<String>,
    /// The input object's size in bytes.
    pub size: u64,
    pub params: Params,
    /// The model file's fingerprint (`name:size:crc32`).
    pub model: String,
}

#[derive(Serialize)]
struct StoredRef<'a> {
    schema: &'static str,
    inference_id: &'a str,
    fingerprint: &'a Fingerprint,
    frames: &'a [FrameDetections],
}

#[derive(Deserialize)]
struct Stored {
    schema: String,
    inference_id: String,
    fingerprint: Fingerprint,
    frames: Vec<FrameDetections>,
}

/// Where a worker keeps its checkpoints, and how often it saves them.
#[derive(Clone)]
pub struct Checkpoints {
    storage: Storage,
    /// `{output_path}/.checkpoints`
    prefix: S3Uri,
    every: Duration,
}

impl Checkpoints {
    pub fn new(storage: Storage, output_path: &S3Uri, every: Duration) -> Checkpoints {
        Checkpoints {
            storage,
            prefix: output_path.join(".checkpoints"),
            every,
        }
    }

    /// The checkpoint of request `inference_id` (an id already validated to be a safe
    /// key component).
    pub fn location(&self, inference_id: &str) -> S3Uri {
        self.prefix.join(&format!("{inference_id}.json"))
    }

    /// The frames to resume `inference_id` from: empty when there is no checkpoint, or
    /// when it cannot be used (logged with the reason).
    pub async fn load(
        &self,
        inference_id: &str,
        fingerprint: &Fingerprint,
    ) -> Vec<FrameDetections> {
        let uri = self.location(inference_id);
        let bytes = match self.storage.get_bytes(&uri, MAX_CHECKPOINT_BYTES).await {
            Ok(b) => b,
            Err(StorageError::NotFound { .. }) => return Vec::new(),
            Err(e) => {
                warn!(checkpoint = %uri, "checkpoint not read, starting over: {e}");
                return Vec::new();
            }
        };
        match check(&bytes, inference_id, fingerprint) {
            Ok(frames) => {
                info!(
                    checkpoint = %uri,
                    frames = frames.len(),
                    last_frame = frames.last().map(|f| f.meta.index),
                    "resuming from a checkpoint"
                );
                frames
            }
            Err(why) => {
                warn!(checkpoint = %uri, "checkpoint ignored, starting over: {why}");
                Vec::new()
            }
        }
    }

    /// A saver for one running job.
    pub fn saver(&self, inference_id: &str, fingerprint: Fingerprint) -> Saver {
        Saver {
            storage: self.storage.clone(),
            uri: self.location(inference_id),
            inference_id: inference_id.to_string(),
            fingerprint,
            every: self.every,
            last: Instant::now(),
            saved_frames: 0,
            in_flight: None,
        }
    }

    /// Remove the checkpoint of a settled request (best effort: a leftover is ignored
    /// or replaced later, and an S3 lifecycle rule on the prefix collects it).
    pub async fn delete(&self, inference_id: &str) {
        let uri = self.location(inference_id);
        if let Err(e) = self.storage.delete(&uri).await {
            warn!(checkpoint = %uri, "checkpoint not deleted: {e}");
        }
    }
}

/// The frames of a stored checkpoint, if it belongs to this request and fingerprint.
fn check(
    bytes: &[u8],
    inference_id: &str,
    fingerprint: &Fingerprint,
) -> Result<Vec<FrameDetections>, String> {
    let stored: Stored =
        serde_json::from_slice(bytes).map_err(|e| format!("not a readable checkpoint ({e})"))?;
    if stored.schema != SCHEMA {
        return Err(format!("schema {:?}, not {SCHEMA:?}", stored.schema));
    }
    if stored.inference_id != inference_id {
        return Err(format!("it belongs to request {:?}", stored.inference_id));
    }
    let f = &stored.fingerprint;
    let differs = [
        (f.input != fingerprint.input, "input location"),
        (
            f.etag != fingerprint.etag || f.size != fingerprint.size,
            "input object (ETag or size)",
        ),
        (f.params != fingerprint.params, "parameters"),
        (f.model != fingerprint.model, "model"),
    ];
    let what: Vec<&str> = differs
        .iter()
        .filter(|(d, _)| *d)
        .map(|(_, w)| *w)
        .collect();
    if !what.is_empty() {
        return Err(format!("made with another {}", what.join(", ")));
    }
    let in_order = stored
        .frames
        .windows(2)
        .all(|w| w[0].meta.index < w[1].meta.index);
    if !in_order {
        return Err("its frames are not in presentation order".into());
    }
    Ok(stored.frames)
}

/// Saves one job's checkpoints: [`Saver::offer`] after every batch, at most one upload
/// at a time, at most one per interval.
pub struct Saver {
    storage: Storage,
    uri: S3Uri,
    inference_id: String,
    fingerprint: Fingerprint,
    every: Duration,
    last: Instant,
    saved_frames: usize,
    in_flight: Option<tokio::task::JoinHandle<()>>,
}

impl Saver {
    /// Frames done so far: saved if the interval has passed, something new is there
    /// and the previous upload has finished (uploads run beside the job).
    pub fn offer(&mut self, frames: &[FrameDetections]) {
        if self.last.elapsed() < self.every || frames.len() <= self.saved_frames {
            return;
        }
        if self.in_flight.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.last = Instant::now();
        let body = serde_json::to_vec(&StoredRef {
            schema: SCHEMA,
            inference_id: &self.inference_id,
            fingerprint: &self.fingerprint,
            frames,
        });
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                warn!("checkpoint not saved: {e}");
                return;
            }
        };
        self.saved_frames = frames.len();
        let (storage, uri, n) = (self.storage.clone(), self.uri.clone(), frames.len());
        let last_frame = frames.last().map(|f| f.meta.index);
        self.in_flight = Some(tokio::spawn(async move {
            let bytes = body.len();
            match storage.put(&uri, body, "application/json").await {
                Ok(()) => {
                    info!(checkpoint = %uri, frames = n, last_frame, bytes, "checkpoint saved")
                }
                Err(e) => warn!(checkpoint = %uri, "checkpoint not saved: {e}"),
            }
        }));
    }

    /// Wait for an upload in progress, so no checkpoint lands after the job is settled.
    pub async fn finish(mut self) {
        if let Some(h) = self.in_flight.take() {
            let _ = h.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::Detection;
    use crate::video::FrameMeta;

    fn fingerprint() -> Fingerprint {
        Fingerprint {
            input: "s3://b/in.mp4".into(),
            etag: Some("\"abc\"".into()),
            size: 1234,
            params: Params::default(),
            model: "m:10:0000abcd".into(),
        }
    }

    fn frames(indices: &[u64]) -> Vec<FrameDetections> {
        indices
            .iter()
            .map(|&index| FrameDetections {
                meta: FrameMeta {
                    index,
                    pts_s: index as f64 / 30.0 + 1e-9,
                    width: 320,
                    height: 240,
                    scale_x: 1.0 / 3.0,
                    scale_y: 0.1,
                },
                detections: vec![Detection {
                    label_id: 3,
                    score: 0.912_345_7,
                    bbox: [1.5, 2.25, 100.125, 200.0 / 3.0],
                    mask: None,
                    track_id: Some(7),
                }],
            })
            .collect()
    }

    fn stored(id: &str, fp: &Fingerprint, f: &[FrameDetections]) -> Vec<u8> {
        serde_json::to_vec(&StoredRef {
            schema: SCHEMA,
            inference_id: id,
            fingerprint: fp,
            frames: f,
        })
        .unwrap()
    }

    #[test]
    fn a_checkpoint_reads_back_its_exact_frames() {
        let f = frames(&[0, 30, 60]);
        let back = check(
            &stored("req-1", &fingerprint(), &f),
            "req-1",
            &fingerprint(),
        )
        .unwrap();
        assert_eq!(back, f, "floats and all, bit for bit");
    }

    #[test]
    fn foreign_or_damaged_checkpoints_are_refused_with_the_reason() {
        let fp = fingerprint();
        let f = frames(&[0, 30]);
        let bytes = stored("req-1", &fp, &f);
        let refuse = |bytes: &[u8], id: &str, fp: &Fingerprint| check(bytes, id, fp).unwrap_err();
        assert!(refuse(&bytes, "req-2", &fp).contains("belongs to request"));
        let mut other = fp.clone();
        other.etag = Some("\"new\"".into());
        assert!(refuse(&bytes, "req-1", &other).contains("input object"));
        let mut other = fp.clone();
        other.params.min_score = Some(0.5);
        assert!(refuse(&bytes, "req-1", &other).contains("parameters"));
        let mut other = fp.clone();
        other.model = "m:10:ffffffff".into();
        assert!(refuse(&bytes, "req-1", &other).contains("model"));
        assert!(refuse(&bytes[..bytes.len() / 2], "req-1", &fp).contains("not a readable"));
        assert!(refuse(b"\x00\xff garbage", "req-1", &fp).contains("not a readable"));
        let unordered = stored("req-1", &fp, &frames(&[30, 0]));
        assert!(refuse(&unordered, "req-1", &fp).contains("order"));
    }
}
