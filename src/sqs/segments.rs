//! One video across the fleet: a request whose video is longer than its
//! `segment_seconds` is split by the worker that receives it into segment messages,
//! sent to the same queue; whichever workers take them each compute one time range and
//! store it as a part; the worker that stores the last part assembles the one document,
//! stores it, sends the one notification and removes the parts.
//!
//! Objects, all under `{output_path}/.parts/{inferenceId}/`:
//! - `manifest.json`: what the request is (input location, ETag and size, resolved
//!   parameters, model, the segments' time ranges, what the notification needs).
//!   Written by the splitting worker with `If-None-Match: *`; a segment message names
//!   only the request id and its index, so the manifest is the one source of truth;
//! - `part-00000.json` …: one per segment, the frames with detections as the model gave
//!   them (no identities: tracks are made once, over the whole video, at assembly);
//! - `claim.json`: who settles the request. Created with `If-None-Match: *` by the
//!   segment that finds every part present (or by the first segment that fails for
//!   good), so exactly one worker settles a request even when the last two parts land at
//!   the same moment: S3 lists are strongly consistent, each worker lists after storing
//!   its own part, so the last to store sees them all, and of those that see them all
//!   the conditional write lets one through.
//!
//! Redelivery: a segment whose part is already stored is not computed again; the
//! message that holds the claim resumes settling (assembly, output, notification).
//! A segment message for a request whose manifest is gone (already settled) is dropped,
//! and a part stored after its request was settled is removed by its own worker.

use std::path::Path;
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::checkpoint::Fingerprint;
use super::lease::Lease;
use super::outcome::{Disposition, JobError, RequestInfo};
use super::SqsWorker;
use crate::aws::{classify, retry};
use crate::metrics::Outcome;
use crate::notify::RequestParameters;
use crate::pipeline::{Job, JobStats, PipelineError};
use crate::request::Request;
use crate::schema::FrameDetections;
use crate::storage::{Downloaded, S3Uri, Storage, StorageError};
use crate::video::{Source, TimeRange, VideoInfo};

/// The `schema` of a manifest.
pub const MANIFEST_SCHEMA: &str = "vidinfer/segments/1";
/// The `schema` of a part.
pub const PART_SCHEMA: &str = "vidinfer/part/1";
/// Most segments one request is split into (longer segments beyond that).
pub const MAX_SEGMENTS: usize = 1000;
/// Largest part read back (a part holds at most one segment's frames).
const MAX_PART_BYTES: u64 = 1 << 30;
const MAX_SMALL_BYTES: u64 = 1 << 20;

/// The time ranges a request's `range` is split into, for a video of `duration_s`:
/// consecutive, half-open (a frame at a boundary belongs to the later segment), the last
/// one open-ended like the request's own end (so a duration the container misstates
/// loses nothing). Empty when the span is not longer than one segment.
pub fn plan(range: TimeRange, duration_s: f64, segment_s: f64) -> Vec<TimeRange> {
    let end = range.end_s.map_or(duration_s, |e| e.min(duration_s));
    let span = end - range.start_s;
    if !(segment_s > 0.0 && span.is_finite() && span > segment_s) {
        return Vec::new();
    }
    let mut n = (span / segment_s).ceil() as usize;
    // A sliver at the end joins the segment before it.
    if span - (n - 1) as f64 * segment_s < segment_s * 0.25 {
        n -= 1;
    }
    let (n, len) = if n > MAX_SEGMENTS {
        (MAX_SEGMENTS, span / MAX_SEGMENTS as f64)
    } else {
        (n, segment_s)
    };
    if n < 2 {
        return Vec::new();
    }
    let bound = |k: usize| range.start_s + k as f64 * len;
    (0..n)
        .map(|k| TimeRange {
            start_s: if k == 0 { range.start_s } else { bound(k) },
            end_s: if k + 1 == n {
                range.end_s
            } else {
                Some(bound(k + 1))
            },
        })
        .collect()
}

/// The body of a segment message: `{"vidinferSegment": {"inferenceId": …, "index": …}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentMessage {
    pub inference_id: String,
    pub index: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SegmentBody {
    vidinfer_segment: SegmentMessage,
}

impl SegmentMessage {
    /// The message body.
    pub fn body(&self) -> String {
        serde_json::to_string(&SegmentBody {
            vidinfer_segment: self.clone(),
        })
        .expect("json")
    }

    /// A segment message, if `body` is one with a valid request id (anything else is an
    /// ordinary request, refused or not by the request parser).
    pub fn parse(body: &str) -> Option<SegmentMessage> {
        let b: SegmentBody = serde_json::from_str(body).ok()?;
        crate::request::validate_inference_id(&b.vidinfer_segment.inference_id).ok()?;
        Some(b.vidinfer_segment)
    }
}

/// What a split request is: written once by the splitting worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub inference_id: String,
    /// The input object, the request's parameters (its whole range) and the model.
    pub fingerprint: Fingerprint,
    pub segments: Vec<TimeRange>,
    /// The notification's `requestParameters`.
    pub parameters: RequestParameters,
    /// When the request was received (the notification's `receivedTime`), in
    /// nanoseconds since the epoch.
    pub received_unix_ns: i128,
    /// The request's `invocationTimeoutSeconds`, which bounds each segment.
    pub invocation_timeout_s: u64,
}

impl Manifest {
    pub fn received(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.received_unix_ns)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// One segment's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    pub schema: String,
    pub inference_id: String,
    pub index: usize,
    pub range: TimeRange,
    /// The input object and model as the segment's worker saw them.
    pub etag: Option<String>,
    pub size: u64,
    pub model: String,
    pub video: VideoInfo,
    pub frames: Vec<FrameDetections>,
    pub stats: JobStats,
}

/// Who settles a split request, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The segment whose message settles the request.
    pub index: usize,
    /// Set when a segment failed for good: the request's failure reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// The frames, video and summed stats of a request's parts, checked against its
/// manifest: every part present once, of this request and input and model, its frames
/// inside its own range and in order, all of one video.
pub fn join(
    manifest: &Manifest,
    parts: Vec<Part>,
) -> Result<(VideoInfo, Vec<FrameDetections>, JobStats), String> {
    let f = &manifest.fingerprint;
    if parts.len() != manifest.segments.len() {
        return Err(format!(
            "{} parts for {} segments",
            parts.len(),
            manifest.segments.len()
        ));
    }
    let mut video: Option<VideoInfo> = None;
    let mut frames = Vec::new();
    let mut stats = JobStats::default();
    for (k, p) in parts.into_iter().enumerate() {
        let bad = |why: String| Err(format!("part {k}: {why}"));
        if p.schema != PART_SCHEMA || p.inference_id != manifest.inference_id || p.index != k {
            return bad(format!(
                "it is part {} of request {:?} ({:?})",
                p.index, p.inference_id, p.schema
            ));
        }
        if p.range != manifest.segments[k] {
            return bad(format!("its range {:?} is not the segment's", p.range));
        }
        if p.etag != f.etag || p.size != f.size || p.model != f.model {
            return bad("it was made from another input object or model".into());
        }
        if let Some(out) = p.frames.iter().find(|fr| !p.range.contains(fr.meta.pts_s)) {
            return bad(format!(
                "frame {} at {} s is outside its range",
                out.meta.index, out.meta.pts_s
            ));
        }
        match &video {
            Some(v) if *v != p.video => return bad("another video".into()),
            Some(_) => {}
            None => video = Some(p.video.clone()),
        }
        let s = &p.stats;
        stats.frames_decoded += s.frames_decoded;
        stats.decode_s += s.decode_s;
        stats.infer_s += s.infer_s;
        stats.wall_s = stats.wall_s.max(s.wall_s);
        frames.extend(p.frames);
    }
    let video = video.ok_or("no parts")?;
    Ok((video, frames, stats))
}

/// A worker's view of the split requests' objects.
#[derive(Clone, Debug)]
pub struct SegmentStore {
    storage: Storage,
    /// `{output_path}/.parts`
    prefix: S3Uri,
}

impl SegmentStore {
    pub fn new(storage: Storage, output_path: &S3Uri) -> SegmentStore {
        SegmentStore {
            storage,
            prefix: output_path.join(".parts"),
        }
    }

    /// `{output_path}/.parts/{inferenceId}/` (an id already validated to be a safe key
    /// component).
    pub fn dir(&self, inference_id: &str) -> S3Uri {
        self.prefix.join(&format!("{inference_id}/"))
    }

    fn manifest_uri(&self, id: &str) -> S3Uri {
        self.dir(id).join("manifest.json")
    }

    fn claim_uri(&self, id: &str) -> S3Uri {
        self.dir(id).join("claim.json")
    }

    pub fn part_uri(&self, id: &str, index: usize) -> S3Uri {
        self.dir(id).join(&format!("part-{index:05}.json"))
    }

    /// Store the manifest unless one is there. One that is there must be this one (the
    /// same request, split again after a redelivery): else `Err` says why.
    pub async fn create_manifest(&self, m: &Manifest) -> Result<Result<(), String>, StorageError> {
        let uri = self.manifest_uri(&m.inference_id);
        let body = serde_json::to_vec(m).expect("json");
        if self.storage.put_if_absent(&uri, body, JSON).await? {
            return Ok(Ok(()));
        }
        match self.manifest(&m.inference_id).await? {
            Some(existing) if existing.fingerprint == m.fingerprint => Ok(Ok(())),
            Some(_) => Ok(Err(format!(
                "request {} is already being processed in segments from another input, \
                 parameters or model; give this one another inferenceId",
                m.inference_id
            ))),
            // Settled and removed between the two calls: split afresh.
            None => Box::pin(self.create_manifest(m)).await,
        }
    }

    /// The manifest of a split request (`None`: none, the request is settled or was
    /// never split). One that does not parse is treated as absent.
    pub async fn manifest(&self, id: &str) -> Result<Option<Manifest>, StorageError> {
        let Some(bytes) = self.get(&self.manifest_uri(id), MAX_SMALL_BYTES).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<Manifest>(&bytes)
            .ok()
            .filter(|m| m.schema == MANIFEST_SCHEMA && m.inference_id == id))
    }

    pub async fn put_part(&self, part: &Part) -> Result<(), StorageError> {
        let uri = self.part_uri(&part.inference_id, part.index);
        let body = serde_json::to_vec(part).expect("json");
        self.storage.put(&uri, body, JSON).await
    }

    /// Which parts are stored.
    pub async fn parts_present(&self, id: &str, count: usize) -> Result<Vec<bool>, StorageError> {
        let mut present = vec![false; count];
        for (uri, _) in self.storage.list(&self.dir(id)).await? {
            let name = uri.key.rsplit('/').next().unwrap_or("");
            let index = name
                .strip_prefix("part-")
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(slot) = index.and_then(|i| present.get_mut(i)) {
                *slot = true;
            }
        }
        Ok(present)
    }

    /// Every part, in order (`Err` when one cannot be read as a part).
    pub async fn parts(&self, m: &Manifest) -> Result<Result<Vec<Part>, String>, StorageError> {
        let mut parts = Vec::with_capacity(m.segments.len());
        for k in 0..m.segments.len() {
            let uri = self.part_uri(&m.inference_id, k);
            let Some(bytes) = self.get(&uri, MAX_PART_BYTES).await? else {
                return Ok(Err(format!("part {k} is missing")));
            };
            match serde_json::from_slice::<Part>(&bytes) {
                Ok(p) => parts.push(p),
                Err(e) => return Ok(Err(format!("part {k} is not readable ({e})"))),
            }
        }
        Ok(Ok(parts))
    }

    /// The claim, if one is stored.
    pub async fn claim(&self, id: &str) -> Result<Option<Claim>, StorageError> {
        let Some(bytes) = self.get(&self.claim_uri(id), MAX_SMALL_BYTES).await? else {
            return Ok(None);
        };
        // An unreadable claim still claims: nobody may settle twice. It settles as a
        // failure, by whichever segment meets it.
        Ok(Some(serde_json::from_slice(&bytes).unwrap_or(Claim {
            index: usize::MAX,
            failure: Some("the request's claim object is unreadable".into()),
        })))
    }

    /// Claim the request for `claim.index`: the claim that holds, this one or an
    /// earlier one.
    pub async fn try_claim(&self, id: &str, claim: Claim) -> Result<Claim, StorageError> {
        let body = serde_json::to_vec(&claim).expect("json");
        if self
            .storage
            .put_if_absent(&self.claim_uri(id), body, JSON)
            .await?
        {
            return Ok(claim);
        }
        Ok(self.claim(id).await?.unwrap_or(claim))
    }

    /// Remove a settled request's objects: the manifest first (so late segment messages
    /// are dropped), then the parts, the claim last (best effort: what is left is
    /// collected by a lifecycle rule on the prefix). Returns how many were removed.
    pub async fn remove(&self, id: &str, count: usize) -> usize {
        let mut uris = vec![self.manifest_uri(id)];
        uris.extend((0..count).map(|k| self.part_uri(id, k)));
        uris.push(self.claim_uri(id));
        let mut removed = 0;
        for uri in uris {
            match self.storage.delete(&uri).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(object = %uri, "not removed: {e}"),
            }
        }
        removed
    }

    /// Remove one part (stored after its request was settled).
    pub async fn remove_part(&self, id: &str, index: usize) {
        let _ = self.storage.delete(&self.part_uri(id, index)).await;
    }

    async fn get(&self, uri: &S3Uri, max: u64) -> Result<Option<Vec<u8>>, StorageError> {
        match self.storage.get_bytes(uri, max).await {
            Ok(b) => Ok(Some(b)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

const JSON: &str = "application/json";

/// What a queue job ended with.
pub(super) enum Done {
    /// The request's document.
    Document(Vec<u8>),
    /// The request was split into segment messages.
    Split,
}

impl SqsWorker {
    /// Split the request into segments if its video is longer than `segment_s`: store
    /// the manifest and send one message per segment. `false`: not split (too short, or
    /// no stated duration), the job runs whole here.
    pub(super) async fn split(
        &self,
        info: &RequestInfo,
        request: &Request,
        fingerprint: &Fingerprint,
        path: &Path,
        segment_s: f64,
    ) -> Result<bool, JobError> {
        let path = path.to_path_buf();
        let video = tokio::task::spawn_blocking(move || crate::video::probe(path))
            .await
            .map_err(|e| JobError::Pipeline(PipelineError::Internal(e.to_string())))?
            .map_err(|e| JobError::Pipeline(e.into()))?;
        let Some(duration_s) = video.duration_s else {
            info!("the video states no duration: processed whole, not split");
            return Ok(false);
        };
        let segments = plan(fingerprint.params.range, duration_s, segment_s);
        if segments.is_empty() {
            return Ok(false);
        }
        let manifest = Manifest {
            schema: MANIFEST_SCHEMA.into(),
            inference_id: info.inference_id.clone(),
            fingerprint: fingerprint.clone(),
            segments,
            parameters: info.parameters.clone(),
            received_unix_ns: info.received.unix_timestamp_nanos(),
            invocation_timeout_s: request.invocation_timeout_s,
        };
        self.segments
            .create_manifest(&manifest)
            .await
            .map_err(JobError::Parts)?
            .map_err(JobError::Mismatch)?;
        self.enqueue(&manifest).await?;
        info!(
            segments = manifest.segments.len(),
            segment_s, duration_s, "split into segments"
        );
        Ok(true)
    }

    /// Send one message per segment, ten per call, retrying the entries SQS refused.
    async fn enqueue(&self, m: &Manifest) -> Result<(), JobError> {
        let bodies: Vec<(usize, String)> = (0..m.segments.len())
            .map(|index| {
                let msg = SegmentMessage {
                    inference_id: m.inference_id.clone(),
                    index,
                };
                (index, msg.body())
            })
            .collect();
        for chunk in bodies.chunks(10) {
            let mut pending: Vec<&(usize, String)> = chunk.iter().collect();
            let mut last_error = String::new();
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=self.config.step_attempts.max(1) {
                let entries = pending
                    .iter()
                    .map(|(k, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(k.to_string())
                            .message_body(body)
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| JobError::Enqueue(e.to_string()))?;
                let sent = self
                    .sqs
                    .send_message_batch()
                    .queue_url(&self.config.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
                match sent {
                    Ok(out) => {
                        let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
                        if let Some(f) = out.failed().first() {
                            last_error = format!(
                                "{}: {}",
                                f.code(),
                                f.message().unwrap_or("refused by SQS")
                            );
                        }
                        pending.retain(|(k, _)| failed.contains(&k.to_string().as_str()));
                    }
                    Err(e) => last_error = classify(&e).1,
                }
                if pending.is_empty() {
                    break;
                }
                if attempt < self.config.step_attempts {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(15));
                }
            }
            if !pending.is_empty() {
                return Err(JobError::Enqueue(format!(
                    "{} of {} segment messages not sent: {last_error}",
                    pending.len(),
                    m.segments.len()
                )));
            }
        }
        Ok(())
    }

    /// Process one segment message: compute and store its part (unless stored already),
    /// then settle the request if this segment holds the claim.
    pub(super) async fn handle_segment(
        &self,
        seg: SegmentMessage,
        lease: Lease,
        hard_stop: &CancellationToken,
    ) -> Outcome {
        let id = seg.inference_id.as_str();
        let span = tracing::Span::current();
        span.record("inference_id", id);
        span.record("segment", seg.index);
        let manifest = match self.segments.manifest(id).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                info!("no manifest: the request is settled (or was never split); segment dropped");
                lease.delete().await;
                return Outcome::Part;
            }
            Err(e) => return self.later(lease, &e).await,
        };
        let count = manifest.segments.len();
        if seg.index >= count {
            warn!(
                count,
                "segment index beyond the request's segments: dropped"
            );
            lease.delete().await;
            return Outcome::Part;
        }
        let info = RequestInfo {
            inference_id: id.to_string(),
            parameters: manifest.parameters.clone(),
            received: manifest.received(),
        };
        match self.segments.claim(id).await {
            Ok(Some(c)) if c.index == seg.index || c.index == usize::MAX => {
                // This message settles the request (again, after a redelivery).
                return self.settle_split(&manifest, &info, lease, c).await;
            }
            Ok(Some(_)) => {
                info!("another segment settles the request; segment dropped");
                lease.delete().await;
                return Outcome::Part;
            }
            Ok(None) => {}
            Err(e) => return self.later(lease, &e).await,
        }
        let mut present = match self.segments.parts_present(id, count).await {
            Ok(p) => p,
            Err(e) => return self.later(lease, &e).await,
        };
        if present[seg.index] {
            info!("part already stored (a redelivery): not computed again");
        } else {
            let range = manifest.segments[seg.index];
            info!(
                count,
                start_s = range.start_s,
                end_s = range.end_s,
                "computing a segment"
            );
            let keep_alive = lease.keep_alive(self.config.heartbeat_every);
            let limit_s = manifest.invocation_timeout_s;
            let result = tokio::select! {
                r = tokio::time::timeout(
                    Duration::from_secs(limit_s),
                    self.compute_part(&manifest, seg.index),
                ) => r.unwrap_or(Err(JobError::Timeout { limit_s })),
                _ = hard_stop.cancelled() => Err(JobError::HandBack),
            };
            keep_alive.stop().await;
            if let Err(e) = result {
                let e = JobError::Segment {
                    index: seg.index,
                    count,
                    range,
                    source: Box::new(e),
                };
                if !matches!(e.disposition(), Disposition::Fail(_)) {
                    // Retried or handed back: no notification, the message comes back.
                    return self.outcome.settle(&info, lease, Err(e)).await;
                }
                // For good: the first segment to fail settles the request, once.
                let claim = Claim {
                    index: seg.index,
                    failure: Some(e.reason()),
                };
                return match self.segments.try_claim(id, claim).await {
                    Ok(c) if c.index == seg.index => {
                        self.settle_split(&manifest, &info, lease, c).await
                    }
                    Ok(_) => {
                        warn!("segment failed ({}); the request is already settled by another segment", e.reason());
                        lease.delete().await;
                        Outcome::Part
                    }
                    Err(se) => self.later(lease, &se).await,
                };
            }
            // Stored now: which parts are there after it.
            present = match self.segments.parts_present(id, count).await {
                Ok(p) => p,
                Err(e) => return self.later(lease, &e).await,
            };
        }
        // The segment that finds every part stored claims the request.
        if !present.iter().all(|&b| b) {
            if matches!(self.segments.manifest(id).await, Ok(None)) {
                // The request was settled (failed by another segment) while this one
                // ran: its part has no use.
                self.segments.remove_part(id, seg.index).await;
            }
            info!("part stored; other segments remain");
            lease.delete().await;
            return Outcome::Part;
        }
        let claim = Claim {
            index: seg.index,
            failure: None,
        };
        match self.segments.try_claim(id, claim).await {
            Ok(c) if c.index == seg.index => self.settle_split(&manifest, &info, lease, c).await,
            Ok(_) => {
                info!("part stored; another segment settles the request");
                lease.delete().await;
                Outcome::Part
            }
            Err(e) => self.later(lease, &e).await,
        }
    }

    /// A transient fault reading or writing segment objects: the message comes back.
    async fn later(&self, lease: Lease, e: &StorageError) -> Outcome {
        warn!("segment objects: {e}; the message will be redelivered");
        lease.defer().await;
        Outcome::Retried
    }

    /// This worker's model fingerprint, which must be the one the request was split
    /// under: a document is made by one model.
    fn same_model(&self, m: &Manifest) -> Result<&String, JobError> {
        let model = &self.engine.model().info().fingerprint;
        if *model != m.fingerprint.model {
            return Err(JobError::Mismatch(format!(
                "the request was split under model {} and this worker runs {model}: \
                 every segment of a request must run on one model",
                m.fingerprint.model
            )));
        }
        Ok(model)
    }

    /// Compute one segment and store its part.
    async fn compute_part(&self, m: &Manifest, index: usize) -> Result<(), JobError> {
        let f = &m.fingerprint;
        let model = self.same_model(m)?;
        // The manifest is an input too: its location is checked like a request's.
        let input: S3Uri = f.input.parse().map_err(JobError::Input)?;
        self.config
            .allowed_inputs
            .check(&input)
            .map_err(JobError::BadRequest)?;
        let Downloaded { file, bytes, etag } = self.download(&input).await?;
        if etag != f.etag || bytes != f.size {
            return Err(JobError::Mismatch(format!(
                "the input object changed after the request was split (ETag {:?}, {} bytes; \
                 now {etag:?}, {bytes} bytes)",
                f.etag, f.size
            )));
        }
        let range = m.segments[index];
        let mut params = f.params.clone();
        params.range = range;
        // Identities are given once, over the whole video, when the parts are joined.
        params.track = None;
        let job = Job {
            source: Source::Path(file.path().to_path_buf()),
            params,
        };
        let mut log = crate::pipeline::ProgressLog::from_env();
        let out = self
            .engine
            .run(job, |p| log.observe(p))
            .await
            .map_err(JobError::Pipeline)?;
        drop(file);
        self.record_run(&out.stats);
        let part = Part {
            schema: PART_SCHEMA.into(),
            inference_id: m.inference_id.clone(),
            index,
            range,
            etag,
            size: bytes,
            model: model.clone(),
            video: out.video,
            frames: out.frames,
            stats: out.stats,
        };
        retry(
            self.config.step_attempts,
            StorageError::is_transient,
            || self.segments.put_part(&part),
        )
        .await
        .map_err(JobError::Parts)?;
        info!(frames = part.frames.len(), "part stored");
        Ok(())
    }

    /// Settle a split request this segment holds the claim of: assemble and complete,
    /// or fail with the claimed reason; then remove its objects.
    async fn settle_split(
        &self,
        m: &Manifest,
        info: &RequestInfo,
        lease: Lease,
        claim: Claim,
    ) -> Outcome {
        let result = match claim.failure {
            Some(reason) => Err(JobError::Claimed(reason)),
            None => self.assemble(m).await,
        };
        let outcome = self.outcome.settle(info, lease, result).await;
        if matches!(outcome, Outcome::Completed | Outcome::Failed) {
            let removed = self
                .segments
                .remove(&m.inference_id, m.segments.len())
                .await;
            info!(removed, "segment objects removed");
        }
        outcome
    }

    /// The request's document from its parts.
    async fn assemble(&self, m: &Manifest) -> Result<Vec<u8>, JobError> {
        self.same_model(m)?;
        let parts = self
            .segments
            .parts(m)
            .await
            .map_err(JobError::Parts)?
            .map_err(JobError::Assembly)?;
        let (video, frames, stats) = join(m, parts).map_err(JobError::Assembly)?;
        let done = self
            .engine
            .assemble(video, frames, &m.fingerprint.params, stats)
            .map_err(|e| JobError::Assembly(e.to_string()))?;
        self.metrics.stage("track", done.stats.track_s);
        info!(
            segments = m.segments.len(),
            frames = done.stats.frames_sampled,
            detections = done.stats.detections,
            "parts assembled"
        );
        Ok(done.document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start_s: f64, end_s: Option<f64>) -> TimeRange {
        TimeRange { start_s, end_s }
    }

    #[test]
    fn a_plan_covers_the_range_once_with_an_open_last_segment() {
        assert_eq!(plan(r(0.0, None), 10.0, 10.0), vec![]);
        assert_eq!(plan(r(0.0, None), 9.5, 20.0), vec![]);
        assert_eq!(
            plan(r(0.0, None), 10.0, 4.0),
            vec![r(0.0, Some(4.0)), r(4.0, Some(8.0)), r(8.0, None)]
        );
        // A sliver (0.2 s of 4) joins the segment before it.
        assert_eq!(
            plan(r(0.0, None), 8.2, 4.0),
            vec![r(0.0, Some(4.0)), r(4.0, None)]
        );
        // A request's own range is split, and its end kept.
        assert_eq!(
            plan(r(2.0, Some(7.0)), 10.0, 2.0),
            vec![r(2.0, Some(4.0)), r(4.0, Some(6.0)), r(6.0, Some(7.0))]
        );
        // At most MAX_SEGMENTS, longer segments then.
        let many = plan(r(0.0, None), 7200.0, 1.0);
        assert_eq!(many.len(), MAX_SEGMENTS);
        assert_eq!(many[1].start_s, 7.2);
        // Consecutive and contiguous: every time lands in exactly one segment.
        let p = plan(r(0.0, None), 61.7, 6.1);
        for t in (0..7000).map(|i| i as f64 * 0.01) {
            assert_eq!(p.iter().filter(|s| s.contains(t)).count(), 1, "{t}");
        }
    }

    #[test]
    fn segment_messages_round_trip_and_refuse_unsafe_ids() {
        let m = SegmentMessage {
            inference_id: "clip-1".into(),
            index: 3,
        };
        assert_eq!(
            m.body(),
            r#"{"vidinferSegment":{"inferenceId":"clip-1","index":3}}"#
        );
        assert_eq!(SegmentMessage::parse(&m.body()), Some(m));
        let evil = r#"{"vidinferSegment":{"inferenceId":"../x","index":0}}"#;
        assert_eq!(SegmentMessage::parse(evil), None);
        assert_eq!(
            SegmentMessage::parse(r#"{"inputLocation":"s3://b/k"}"#),
            None
        );
    }
}
