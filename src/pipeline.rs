//! The engine: one job is one video, decoded, sampled, batched through the model and
//! assembled into detections. It knows nothing of HTTP, SQS or SNS: front doors turn
//! their input into a [`Job`] and the [`JobOutput`] into their output.
//!
//! Stages overlap: decoding runs on a blocking thread that pushes frames into a bounded
//! channel (so a slow model slows decoding rather than filling memory), while up to
//! [`MAX_BATCHES_IN_FLIGHT`] batches wait at or run on the shared model thread.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::detection::Detection;
use crate::model::{Image, Model, ModelError};
use crate::params::Params;
use crate::schema::{meets_min_score, source_box, Assembled, FrameDetections, OutputFormat};
use crate::track::{Observation, TrackParams, TrackSummary, Tracker};
use crate::video::{
    DecodeOptions, Decoder, Frame, FrameMeta, Sampling, Source, TimeRange, VideoError, VideoInfo,
};

/// Batches of one job submitted to the model before the oldest is awaited: one runs
/// while the next waits, so the model thread never idles between batches of a job.
pub const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// One unit of work.
pub struct Job {
    pub source: Source,
    pub params: Params,
}

/// Where the time of a job went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStats {
    /// Pictures the decoder produced (non-reference frames it skipped are not counted).
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    /// Detections the document holds (those at or above the request's `min_score`).
    pub detections: u64,
    /// Seconds the decoder was busy (overlaps inference; waits for the model excluded).
    pub decode_s: f64,
    /// Seconds of model forward calls spent on this job's frames.
    pub infer_s: f64,
    /// Seconds the tracker took (all frames).
    #[serde(default)]
    pub track_s: f64,
    /// Seconds from start to the last detection.
    pub wall_s: f64,
    /// Sampled frames taken from a checkpoint instead of the model (counted in
    /// `frames_sampled` too).
    #[serde(default)]
    pub frames_resumed: u64,
}

/// The result of a job, ready to be rendered in either schema.
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub video: VideoInfo,
    pub frames: Vec<FrameDetections>,
    /// The tracker's parameters and tracks (`None`: tracking off).
    pub tracking: Option<(TrackParams, Vec<TrackSummary>)>,
    pub stats: JobStats,
}

impl JobOutput {
    /// The output document (v2 or legacy, per `params.format`) as JSON bytes.
    pub fn document(&self, model: &Model, params: &Params) -> Vec<u8> {
        self.assembled(model, params).to_json(params.format)
    }

    pub fn assembled<'a>(&'a self, model: &'a Model, params: &Params) -> Assembled<'a> {
        Assembled {
            video: &self.video,
            model: model.info(),
            sampling: params.sampling,
            range: params.range,
            min_score: params.min_score,
            masks: params.masks && model.info().masks,
            frames: &self.frames,
            tracking: self.tracking.as_ref().map(|(p, t)| (*p, t.as_slice())),
            legacy_frame: params.model_size.then_some(params.resize),
        }
    }
}

/// A finished job, as every front door needs it: the document in the requested format,
/// what the video is, and where the time went.
#[derive(Debug, Clone)]
pub struct Finished {
    pub document: Vec<u8>,
    pub video: VideoInfo,
    pub stats: JobStats,
}

/// Progress of a running job, reported after each batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub frames_done: u64,
    /// Sampled frames expected, when the container states its frame count.
    pub frames_expected: Option<u64>,
}

/// Logs a running job's progress at a steady interval (30 s, or `VIDINFER_PROGRESS_S`):
/// frames done and expected, the rate, and the time left. Every front door feeds it the
/// engine's [`Progress`], so long jobs show life in a log even without a terminal; the
/// line lands in the caller's span (request or job id).
#[derive(Debug)]
pub struct ProgressLog {
    every: std::time::Duration,
    start: Instant,
    last: Instant,
}

impl ProgressLog {
    /// Every `VIDINFER_PROGRESS_S` seconds (default 30).
    pub fn from_env() -> ProgressLog {
        let s = std::env::var("VIDINFER_PROGRESS_S")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(30.0);
        ProgressLog::every(std::time::Duration::from_secs_f64(s))
    }

    pub fn every(every: std::time::Duration) -> ProgressLog {
        let now = Instant::now();
        ProgressLog {
            every,
            start: now,
            last: now,
        }
    }

    /// Log `p` if the interval has passed since the last line.
    pub fn observe(&mut self, p: Progress) {
        if self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = p.frames_done as f64 / elapsed.max(1e-9);
        let eta_s = p
            .frames_expected
            .filter(|_| rate > 0.0)
            .map(|n| n.saturating_sub(p.frames_done) as f64 / rate);
        tracing::info!(
            frames_done = p.frames_done,
            frames_expected = p.frames_expected,
            frames_per_s = rate,
            eta_s,
            "progress"
        );
    }
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the decode thread failed: {0}")]
    Internal(String),
    /// Frames given to resume from are not what this video gives (another video, other
    /// parameters, a damaged or altered checkpoint): the job must start over.
    #[error("the frames to resume from do not match the video: {0}")]
    Resume(String),
}

impl PipelineError {
    /// True when the same job could succeed on a retry (not a property of the input).
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Video(e) => e.is_transient(),
            PipelineError::Model(ModelError::Stopped) => true,
            PipelineError::Model(_) | PipelineError::Internal(_) | PipelineError::Resume(_) => {
                false
            }
        }
    }
}

/// The engine, shared by every job of a process.
#[derive(Clone, Debug)]
pub struct Engine {
    model: Model,
}

fn expected_samples(info: &VideoInfo, sampling: Sampling, range: TimeRange) -> Option<u64> {
    if !range.is_all() {
        // The span's share of the video (progress estimates only).
        let d = info.duration_s?;
        let span = (range.end_s.unwrap_or(d).min(d) - range.start_s).max(0.0);
        return match sampling {
            Sampling::EveryNth(n) => info.fps.map(|f| (span * f / f64::from(n)).ceil() as u64),
            Sampling::Fps(fps) => Some((span * fps).ceil() as u64),
            Sampling::Keyframes => None,
        };
    }
    match sampling {
        Sampling::EveryNth(n) => info.frames.map(|f| f.div_ceil(u64::from(n))),
        Sampling::Fps(fps) => info.duration_s.map(|d| (d * fps).ceil() as u64),
        // No container declares how many keyframes it holds.
        Sampling::Keyframes => None,
    }
}

impl Engine {
    pub fn new(model: Model) -> Engine {
        Engine { model }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The job path every front door takes: a local video file and the job's
    /// parameters in, the finished document out. `run` passes the user's file, `serve`
    /// the spooled request body, `sqs` the downloaded S3 object.
    pub async fn process_file(
        &self,
        path: &Path,
        params: &Params,
        mut progress: impl FnMut(Progress) + Send,
    ) -> Result<Finished, PipelineError> {
        self.process_file_from(path, params, Vec::new(), |p, _| progress(p))
            .await
    }

    /// [`Engine::process_file`] resuming after `done`, the frames a checkpoint holds;
    /// `progress` also sees every frame done so far, to save the next checkpoint.
    pub async fn process_file_from(
        &self,
        path: &Path,
        params: &Params,
        done: Vec<FrameDetections>,
        progress: impl FnMut(Progress, &[FrameDetections]) + Send,
    ) -> Result<Finished, PipelineError> {
        let job = Job {
            source: Source::Path(path.to_path_buf()),
            params: params.clone(),
        };
        let out = self.run_from(job, done, progress).await?;
        Ok(Finished {
            document: out.document(&self.model, params),
            video: out.video,
            stats: out.stats,
        })
    }

    /// The document of frames computed elsewhere — a video's segments, each run over its
    /// own time range by whichever worker took it — as one run over `params` gives it:
    /// the frames, in presentation order, are checked and replayed through the tracker
    /// like a checkpoint's ([`Engine::run_from`]). `stats` are the parts' own, summed.
    pub fn assemble(
        &self,
        video: VideoInfo,
        frames: Vec<FrameDetections>,
        params: &Params,
        stats: JobStats,
    ) -> Result<Finished, PipelineError> {
        let start = Instant::now();
        let mut assembly = Assembly::new(params, video);
        assembly.replay(frames)?;
        let mut out = assembly.finish();
        let detections = out.stats.detections;
        out.stats = JobStats {
            frames_sampled: out.frames.len() as u64,
            detections,
            track_s: out.stats.track_s,
            wall_s: stats.wall_s + start.elapsed().as_secs_f64(),
            ..stats
        };
        Ok(Finished {
            document: out.document(&self.model, params),
            video: out.video,
            stats: out.stats,
        })
    }

    /// Run one job to completion, returning the detections before they become a
    /// document (for callers that look at them, such as tests and benchmarks).
    pub async fn run(
        &self,
        job: Job,
        mut progress: impl FnMut(Progress) + Send,
    ) -> Result<JobOutput, PipelineError> {
        self.run_from(job, Vec::new(), |p, _| progress(p)).await
    }

    /// [`Engine::run`] after `done`: the first sampled frames of this job with their
    /// detections as the model gave them (a checkpoint). They are replayed through the
    /// tracker; decoding starts at the keyframe at or before the last of them (a time
    /// range from its time), and the decoder checks that it samples that frame exactly
    /// as saved (index, time, geometry) before the model sees the next ones; if not,
    /// the job fails with [`PipelineError::Resume`] and should start over. The result
    /// is the one an uninterrupted run gives.
    pub async fn run_from(
        &self,
        job: Job,
        done: Vec<FrameDetections>,
        mut progress: impl FnMut(Progress, &[FrameDetections]) + Send,
    ) -> Result<JobOutput, PipelineError> {
        let start = Instant::now();
        let batch = self.model.info().batch_size.max(1);
        let params = job.params;
        let (frame_tx, mut frame_rx) = mpsc::channel::<Result<Frame, VideoError>>(batch * 2);
        let (info_tx, info_rx) = tokio::sync::oneshot::channel();
        let mut opts = params.decode_options(self.model.info().input)?;
        // Resuming: decode from the keyframe at or before the last saved frame, which
        // the decoder must give again exactly as saved (the frames before it are not
        // decoded at all; their indices and times are checked by the ranking).
        let resume_at = done.last().map(|f| f.meta);
        if let Some(last) = resume_at {
            opts.range.start_s = opts.range.start_s.max(last.pts_s);
        }
        let source = job.source;
        let decode = tokio::task::spawn_blocking(move || {
            decode_into(source, opts, resume_at, info_tx, frame_tx)
        });
        let video = match info_rx.await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(PipelineError::Internal("decoder exited early".into())),
        };
        let expected = expected_samples(&video, params.sampling, params.range);
        let masks = params.masks && self.model.info().masks;
        let mut assembly = Assembly::new(&params, video);
        assembly.stats.frames_resumed = done.len() as u64;
        assembly.replay(done)?;

        type Pending = tokio::task::JoinHandle<crate::model::InferResult>;
        let mut in_flight: VecDeque<(Vec<FrameMeta>, Pending)> = VecDeque::new();
        let mut input_done = false;
        while !input_done || !in_flight.is_empty() {
            // Fill the pipeline: submit batches while there is room.
            while !input_done && in_flight.len() < MAX_BATCHES_IN_FLIGHT {
                let (metas, images) = next_batch(&mut frame_rx, batch, &mut input_done).await?;
                if images.is_empty() {
                    break;
                }
                let model = self.model.clone();
                let handle = tokio::spawn(async move { model.infer(images, masks).await });
                in_flight.push_back((metas, handle));
            }
            let Some((metas, handle)) = in_flight.pop_front() else {
                continue;
            };
            let (dets, secs) = handle
                .await
                .map_err(|e| PipelineError::Internal(e.to_string()))??;
            assembly.stats.infer_s += secs;
            for (meta, detections) in metas.into_iter().zip(dets) {
                assembly.push(meta, detections);
            }
            progress(
                Progress {
                    frames_done: assembly.frames.len() as u64,
                    frames_expected: expected,
                },
                &assembly.frames,
            );
        }
        let (frames_decoded, decode_s) = decode
            .await
            .map_err(|e| PipelineError::Internal(e.to_string()))??;
        let mut out = assembly.finish();
        out.stats.frames_decoded = frames_decoded;
        out.stats.decode_s = decode_s;
        out.stats.wall_s = start.elapsed().as_secs_f64();
        Ok(out)
    }
}

/// A resumed frame must be one this video can have: its picture inside the frame size,
/// finite boxes and scores in [0, 1], masks inside the picture. (That it is the frame
/// the decoder samples is checked by the decode thread.)
fn check_resumed(f: &FrameDetections, video: &VideoInfo) -> Result<(), PipelineError> {
    let m = &f.meta;
    let bad = |what: String| Err(PipelineError::Resume(format!("frame {}: {what}", m.index)));
    if video.frames.is_some_and(|n| m.index >= n) {
        return bad("beyond the video's last frame".into());
    }
    let (w, h) = (m.width as f32, m.height as f32);
    for d in &f.detections {
        let [x1, y1, x2, y2] = d.bbox;
        let inside = d.bbox.iter().all(|v| v.is_finite())
            && (0.0..=w).contains(&x1)
            && (0.0..=w).contains(&x2)
            && (0.0..=h).contains(&y1)
            && (0.0..=h).contains(&y2)
            && x1 <= x2
            && y1 <= y2;
        if !inside || !(0.0..=1.0).contains(&d.score) {
            return bad(format!(
                "a detection {:?} @ {} outside the picture",
                d.bbox, d.score
            ));
        }
        if let Some(mask) = &d.mask {
            let fits = u64::from(mask.x0) + u64::from(mask.width) <= u64::from(m.width)
                && u64::from(mask.y0) + u64::from(mask.height) <= u64::from(m.height)
                && mask.bits.len() as u64 == u64::from(mask.width) * u64::from(mask.height);
            if !fits {
                return bad("a mask outside the picture".into());
            }
        }
    }
    Ok(())
}

/// The decode thread: open the source, report what the video is, then push kept frames
/// into `frames` until the end, an error, or the job is abandoned. When resuming, the
/// first kept frame must be exactly `resume_at` (a checkpoint's last frame): it is
/// checked and not sent. Returns the frames decoded and the seconds the decoder was
/// busy (waiting for the model excluded), or why the resumed frame does not match.
fn decode_into(
    source: Source,
    opts: DecodeOptions,
    mut resume_at: Option<FrameMeta>,
    info: tokio::sync::oneshot::Sender<Result<VideoInfo, VideoError>>,
    frames: mpsc::Sender<Result<Frame, VideoError>>,
) -> Result<(u64, f64), PipelineError> {
    let t0 = Instant::now();
    let mut dec = match Decoder::open(source, opts) {
        Ok(d) => d,
        Err(e) => {
            let _ = info.send(Err(e));
            return Ok((0, t0.elapsed().as_secs_f64()));
        }
    };
    let mut busy = t0.elapsed();
    let _ = info.send(Ok(dec.info().clone()));
    loop {
        let t = Instant::now();
        let item = match dec.next_frame() {
            Ok(Some(f)) => Ok(f),
            Ok(None) => break,
            Err(e) => Err(e),
        };
        busy += t.elapsed();
        if let (Ok(frame), Some(m)) = (&item, resume_at.take()) {
            if m == frame.meta {
                continue;
            }
            return Err(PipelineError::Resume(format!(
                "the checkpoint has frame {} at {} s ({}x{}) where the video gives \
                 frame {} at {} s ({}x{})",
                m.index,
                m.pts_s,
                m.width,
                m.height,
                frame.meta.index,
                frame.meta.pts_s,
                frame.meta.width,
                frame.meta.height
            )));
        }
        let failed = item.is_err();
        // The receiver is gone when the job was abandoned: stop decoding.
        if frames.blocking_send(item).is_err() || failed {
            break;
        }
    }
    if let Some(m) = resume_at {
        return Err(PipelineError::Resume(format!(
            "the checkpoint ends at frame {} at {} s, which the video does not give",
            m.index, m.pts_s
        )));
    }
    Ok((dec.frames_decoded(), busy.as_secs_f64()))
}

/// Up to `batch` frames from the decoder, split into metadata and pictures; sets
/// `done` at the end of the video.
async fn next_batch(
    rx: &mut mpsc::Receiver<Result<Frame, VideoError>>,
    batch: usize,
    done: &mut bool,
) -> Result<(Vec<FrameMeta>, Vec<Image>), PipelineError> {
    let mut metas = Vec::with_capacity(batch);
    let mut images = Vec::with_capacity(batch);
    while images.len() < batch {
        match rx.recv().await {
            Some(Ok(f)) => {
                let (meta, image) = split(f);
                metas.push(meta);
                images.push(image);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                *done = true;
                break;
            }
        }
    }
    Ok((metas, images))
}

/// Sampled frames with their detections, in presentation order, tracked as they
/// arrive.
struct Assembly {
    video: VideoInfo,
    frames: Vec<FrameDetections>,
    tracker: Option<Tracker>,
    stats: JobStats,
    /// The request's `min_score`: detections below it are not counted.
    min_score: Option<f32>,
}

impl Assembly {
    fn new(params: &Params, video: VideoInfo) -> Assembly {
        // The legacy array has no place for identities: no tracker for it.
        let track = params.track.filter(|_| params.format == OutputFormat::V2);
        Assembly {
            video,
            frames: Vec::new(),
            tracker: track.map(Tracker::new),
            stats: JobStats::default(),
            min_score: params.min_score,
        }
    }

    fn push(&mut self, meta: FrameMeta, mut detections: Vec<Detection>) {
        // Counted as the document will hold them (`min_score` applies there).
        let min = self.min_score;
        self.stats.detections += detections
            .iter()
            .filter(|d| meets_min_score(min, d.score))
            .count() as u64;
        if let Some(tracker) = &mut self.tracker {
            let t = Instant::now();
            let obs: Vec<Observation> = detections
                .iter()
                .map(|d| Observation {
                    label_id: d.label_id,
                    score: d.score,
                    bbox: source_box(d.bbox, &meta, &self.video),
                })
                .collect();
            let ids = tracker.update(meta.index, meta.pts_s, &obs);
            for (d, id) in detections.iter_mut().zip(ids) {
                d.track_id = id;
            }
            self.stats.track_s += t.elapsed().as_secs_f64();
        }
        self.frames.push(FrameDetections { meta, detections });
    }

    /// Push frames computed earlier (a checkpoint, a video's segments): each must be one
    /// this video can have, after the one before it. Identities are the tracker's to
    /// give: any a stored frame carries are dropped.
    fn replay(&mut self, frames: Vec<FrameDetections>) -> Result<(), PipelineError> {
        for mut f in frames {
            check_resumed(&f, &self.video)?;
            if let Some(prev) = self.frames.last() {
                if prev.meta.index >= f.meta.index {
                    return Err(PipelineError::Resume(format!(
                        "frame {} comes after frame {}",
                        f.meta.index, prev.meta.index
                    )));
                }
            }
            for d in &mut f.detections {
                d.track_id = None;
            }
            self.push(f.meta, f.detections);
        }
        Ok(())
    }

    fn finish(self) -> JobOutput {
        let mut stats = self.stats;
        stats.frames_sampled = self.frames.len() as u64;
        JobOutput {
            video: self.video,
            frames: self.frames,
            tracking: self.tracker.map(|t| (*t.params(), t.summaries())),
            stats,
        }
    }
}

fn split(f: Frame) -> (FrameMeta, Image) {
    let image = Image {
        width: f.meta.width,
        height: f.meta.height,
        rgb: f.rgb,
    };
    (f.meta, image)
}
