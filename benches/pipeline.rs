//! Whole requests: where a request's time goes beyond the model's forward calls, how
//! memory grows with the video's length, how many requests a minute vidinfer serves
//! against the old Python pipeline, and what the model's speed/accuracy knobs cost in
//! recall. Every ratio is measured in this run, on the same videos and TorchScript
//! file; nothing here fails on speed.
//!
//! Sections (each prints a table and a ratio line naming its target):
//! - **[2] overhead**: one request in-process as the SQS worker runs it (S3 GET from a
//!   moto server into a temp file → `Engine::run` → `JobOutput::document` → S3 PUT);
//!   wall time over the summed forward time of its frames, for several layouts of
//!   torch threads × FFmpeg decode threads × batch size. `VIDINFER_BENCH_HEAVY=1` adds
//!   a ResNet-50-FPN Mask R-CNN (random weights, exported once into the cache), whose
//!   forward is costly enough to show the engine's own share.
//! - **[4] memory**: peak RSS (`wait4`'s `ru_maxrss`) of `vidinfer-worker run` on a
//!   10 s and a 100 s video of the same kind, same flags, and its peak anonymous memory
//!   (sampled), which the page cache's share of LibTorch's libraries does not blur. It
//!   runs first, while this process is small (see [`measure`]).
//! - **[5] throughput**: the same requests run by `benches/reference/old_pipeline.py
//!   request` (one after another, as the old service did) and by vidinfer with two in
//!   flight on one shared engine (the SQS worker's default concurrency).
//! - **[5d] end to end**: one request at a time, the old pipeline's code against
//!   vidinfer, on the fixture model and on a ResNet-50-FPN Mask R-CNN (random weights,
//!   exported once into the cache) over a 1080p clip: same frames, same threads.
//! - **[5b] knobs**: the fixture model with a smaller/larger `min_size`, fewer
//!   detections per image, masks off (`benches/reference/variant.py` makes the
//!   variants), on the bundled sample video: frames/s and recall against its ground
//!   truth.
//! - **[5c] model size**: `resize=model` (frames converted once, straight to the
//!   model's own input size) against the default path of the same format, with the
//!   fixture model: legacy on the sample (stretched to 1024x1024, which the model
//!   shrinks to 240x240 itself) and v2 with masks on the sample scaled to 960x720
//!   (which the model shrinks to 320x240): frames/s of whole jobs and the ratio.
//!
//! Run: `scripts/bench.sh pipeline` (it builds the workspace first: section 4 runs the
//! release `vidinfer-worker` binary), or `cargo bench --bench pipeline` after sourcing
//! scripts/env.sh. Model: `VIDINFER_BENCH_MODEL` (default: the fixture model; [5b]
//! always uses the fixture, the only model that knows the sample's shapes). Sections:
//! `VIDINFER_BENCH_SECTIONS=overhead,memory,throughput,endtoend,knobs,modelsize` (default: all). Test
//! videos are generated once into `$VIDINFER_CACHE/bench/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use aws_config::{BehaviorVersion, Region};
use vidinfer::model::{Model, ModelConfig};
use vidinfer::params::{Overrides, Params};
use vidinfer::pipeline::{Engine, Job, JobOutput, JobStats};
use vidinfer::schema::OutputFormat;
use vidinfer::storage::{S3Uri, Storage};
use vidinfer::video::{Resize, Sampling, Source};

use common::moto::Moto;
use common::venv_python;
use support::{cache_dir, ffmpeg, measure, release_binary, shapes, status_kib, x264_clip};

// The test harness's moto server and venv lookup (the bench starts AWS the same way).
#[path = "../tests/common/mod.rs"]
mod common;
mod support;

/// Every Nth frame for sections 2, 4 and 5: with the fixture model the forward calls
/// then dominate a request, which is the regime the overhead target is about.
const INTERVAL: u32 = 5;
/// Requests of section 5.
const REQUESTS: usize = 4;
/// Requests in flight at once in section 5 (the SQS worker's default `--concurrency`).
const CONCURRENCY: usize = 2;
/// Runs per configuration; the fastest is reported (other work shares the machine).
const REPEATS: usize = 3;
/// Rounds over all variants in section 5b, and over both pipelines in section 5.
const KNOB_ROUNDS: usize = 3;
const THROUGHPUT_ROUNDS: usize = 2;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What every section shares.
struct Bench {
    rt: tokio::runtime::Runtime,
    moto: Moto,
    storage: Storage,
    bucket: String,
    model: PathBuf,
    cores: usize,
    cache: PathBuf,
    scratch: tempfile::TempDir,
}

impl Bench {
    fn uri(&self, key: &str) -> S3Uri {
        S3Uri {
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
    }

    fn upload(&self, path: &Path, key: &str) -> S3Uri {
        let uri = self.uri(key);
        let body = std::fs::read(path).unwrap();
        self.rt
            .block_on(self.storage.put(&uri, body, "video/mp4"))
            .expect("upload to moto");
        uri
    }
}

fn load(path: &Path, threads: usize, batch: usize) -> Model {
    let mut cfg = ModelConfig::new(path);
    cfg.threads = threads;
    cfg.batch_size = batch;
    Model::load(cfg).expect("load model")
}

/// One request timed as the SQS worker runs it.
struct Timed {
    wall_s: f64,
    download_s: f64,
    /// The S3 PUT of the document (rendering it is part of the job path).
    output_s: f64,
    stats: JobStats,
}

async fn request(
    b: &Bench,
    engine: &Engine,
    input: &S3Uri,
    output: &S3Uri,
    params: &Params,
) -> Timed {
    let start = Instant::now();
    let file = b
        .storage
        .download(input, b.scratch.path(), u64::MAX)
        .await
        .expect("download")
        .file;
    let download_s = start.elapsed().as_secs_f64();
    let out = engine
        .process_file(file.path(), params, |_| {})
        .await
        .expect("job runs");
    drop(file);
    let t = Instant::now();
    b.storage
        .put(output, out.document, "application/json")
        .await
        .expect("upload result");
    Timed {
        wall_s: start.elapsed().as_secs_f64(),
        download_s,
        output_s: t.elapsed().as_secs_f64(),
        stats: out.stats,
    }
}

fn threads_label(n: usize) -> String {
    if n == 0 {
        "auto".into()
    } else {
        n.to_string()
    }
}

/// How the cores are shared between LibTorch and FFmpeg, and the batch size.
#[derive(Clone, Copy)]
struct Layout {
    torch: usize,
    decode: usize,
    batch: usize,
    masks: bool,
}

impl Layout {
    /// A layout with masks on.
    fn masked(torch: usize, decode: usize, batch: usize) -> Layout {
        Layout {
            torch,
            decode,
            batch,
            masks: true,
        }
    }

    /// The worker's defaults: torch and FFmpeg one thread per core, batch 4.
    fn default_for(cores: usize) -> Layout {
        Layout::masked(cores, 0, 4)
    }

    fn describe(&self) -> String {
        format!(
            "torch {}, ffmpeg {}, batch {}",
            self.torch,
            threads_label(self.decode),
            self.batch
        )
    }
}

struct Case<'a> {
    name: &'a str,
    model: &'a Path,
    input: &'a S3Uri,
    interval: u32,
    repeats: usize,
}

/// What a row of section 2 found.
#[derive(Clone, Copy)]
struct Overhead {
    /// wall / infer: the ratio the target is about.
    ratio: f64,
    wall_s: f64,
    /// decode / infer: how much decoding competes with the model for the cores.
    decode_share: f64,
}

fn overhead_row(b: &Bench, case: &Case, l: Layout) -> Overhead {
    let engine = Engine::new(load(case.model, l.torch, l.batch));
    let params = Params {
        sampling: Sampling::EveryNth(case.interval),
        masks: l.masks,
        decode_threads: l.decode,
        ..Params::default()
    };
    let output = b.uri("out/overhead.json");
    let best = (0..case.repeats)
        .map(|_| {
            b.rt.block_on(request(b, &engine, case.input, &output, &params))
        })
        .min_by(|x, y| x.wall_s.total_cmp(&y.wall_s))
        .unwrap();
    let s = &best.stats;
    let ratio = best.wall_s / s.infer_s;
    println!(
        "{:<22} {:>5} {:>6} {:>5} {:>5} {:>6} {:>7.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}  {:.3}",
        case.name,
        l.torch,
        threads_label(l.decode),
        l.batch,
        if l.masks { "on" } else { "off" },
        s.frames_sampled,
        best.wall_s,
        best.download_s,
        s.decode_s,
        s.infer_s,
        s.wall_s,
        best.output_s,
        ratio
    );
    Overhead {
        ratio,
        wall_s: best.wall_s,
        decode_share: s.decode_s / s.infer_s,
    }
}

fn overhead_header() {
    println!(
        "{:<22} {:>5} {:>6} {:>5} {:>5} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}  wall/infer",
        "case",
        "torch",
        "ffmpeg",
        "batch",
        "masks",
        "frames",
        "wall_s",
        "download",
        "decode_s",
        "infer_s",
        "engine_s",
        "json+put"
    );
}

/// A ResNet-50-FPN Mask R-CNN with random weights (no model hub is reachable), exported
/// once by scripts/export_model.py with the production input size (min 800 / max 1333).
/// No score threshold and 20 detections per image, so the box and mask heads do the
/// work a trained model does on a busy scene instead of finding nothing.
fn heavy_model(cache: &Path) -> Option<PathBuf> {
    let dir = cache.join("r50-fpn-random");
    let pt = dir.join("model.pt");
    if !pt.exists() {
        eprintln!("exporting {} (once)", pt.display());
        let out = Command::new(venv_python())
            .arg(root().join("scripts/export_model.py"))
            .arg("--out")
            .arg(&dir)
            .args(["--weights", "none", "--score-thresh", "0.0"])
            .args(["--detections-per-img", "20"])
            .output()
            .expect("run python");
        if !out.status.success() {
            println!(
                "heavy model not exported: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
    }
    Some(pt)
}

fn section_overhead(b: &Bench, shapes10: &S3Uri, hd: &S3Uri) {
    println!();
    println!(
        "[2] end-to-end overhead: one request in-process as the SQS worker runs it (S3 GET \
         from moto -> temp file -> Engine::run -> v2 JSON -> S3 PUT); model {}, every {INTERVAL}th \
         frame, frames fit in 1024x1024; best of {REPEATS} by wall time",
        b.model.display()
    );
    println!(
        "  infer_s = summed forward time of the request's frames; engine_s = Engine::run's \
         wall; ffmpeg auto = one decode thread per core"
    );
    overhead_header();
    let cores = b.cores;
    let shapes_case = Case {
        name: "shapes 320x240 10s",
        model: &b.model,
        input: shapes10,
        interval: INTERVAL,
        repeats: REPEATS,
    };
    let on = Layout::masked;
    // The worker's defaults first (torch and FFmpeg one thread per core, batch 4).
    let default = Layout::default_for(cores);
    let mut layouts = vec![default, on(cores, 1, 4), on(1, 1, 4), on(1, 0, 4)];
    layouts.extend([on(cores, 1, 1), on(cores, 1, 8)]);
    let mut results = Vec::new();
    for l in &layouts {
        results.push((*l, overhead_row(b, &shapes_case, *l)));
    }
    let no_masks = overhead_row(
        b,
        &shapes_case,
        Layout {
            masks: false,
            ..default
        },
    );
    let hd_case = Case {
        name: "testsrc2 720p 10s",
        input: hd,
        ..shapes_case
    };
    let hd_row = overhead_row(b, &hd_case, default);
    overhead_summary(&results, no_masks, hd_row);

    if std::env::var("VIDINFER_BENCH_HEAVY").as_deref() == Ok("1") {
        overhead_heavy(b, hd);
    }
}

/// Section 2's ratio lines: the defaults (the first of `results`), masks off, the
/// lowest ratio and the fastest request among `results`, and the 720p clip.
fn overhead_summary(results: &[(Layout, Overhead)], no_masks: Overhead, hd_row: Overhead) {
    let (default, defaults) = results[0];
    let lowest = results
        .iter()
        .min_by(|x, y| x.1.ratio.total_cmp(&y.1.ratio))
        .unwrap();
    let fastest = results
        .iter()
        .min_by(|x, y| x.1.wall_s.total_cmp(&y.1.wall_s))
        .unwrap();
    println!(
        "overhead = wall / infer = {:.3} with the defaults ({}), {:.3} with masks off; lowest \
         {:.3} ({}) (target <= 1.05)",
        defaults.ratio,
        default.describe(),
        no_masks.ratio,
        lowest.1.ratio,
        lowest.0.describe()
    );
    println!(
        "  fastest request: {:.3} s ({}), {:.2}x the defaults' wall time; 720p with the \
         defaults: {:.3}, decode_s / infer_s = {:.2}",
        fastest.1.wall_s,
        fastest.0.describe(),
        fastest.1.wall_s / defaults.wall_s,
        hd_row.ratio,
        hd_row.decode_share
    );
}

/// Section 2 on the heavy model (`VIDINFER_BENCH_HEAVY=1`): the defaults and FFmpeg on
/// one thread, on the 720p clip.
fn overhead_heavy(b: &Bench, hd: &S3Uri) {
    let Some(heavy) = heavy_model(&b.cache) else {
        return;
    };
    // Its forward takes seconds a frame on a CPU: few frames, one run per layout, on
    // the 720p clip, where decoding is real work to hide behind the model.
    println!(
        "heavy model {} (ResNet-50-FPN, random weights, input 800/1333, 20 detections \
         per image): 720p clip, every 60th frame, one run per layout",
        heavy.display()
    );
    overhead_header();
    let case = Case {
        name: "r50 testsrc2 720p 10s",
        model: &heavy,
        input: hd,
        interval: 60,
        repeats: 1,
    };
    let r = overhead_row(b, &case, Layout::default_for(b.cores)).ratio;
    let r1 = overhead_row(b, &case, Layout::masked(b.cores, 1, 4)).ratio;
    println!(
        "overhead (ResNet-50-FPN) = wall / infer = {r:.3} with the defaults, {r1:.3} with \
         ffmpeg 1 thread (target <= 1.05)"
    );
}

/// The release `vidinfer-worker` next to this bench's own binary (target/release/deps/..).
fn worker_binary() -> Option<PathBuf> {
    release_binary("vidinfer-worker")
}

fn section_memory(b: &Bench, short: &Path, long: &Path) {
    println!();
    println!(
        "[4] memory: peak RSS of `vidinfer-worker run --frame-interval {INTERVAL} --torch-threads {}` \
         (model {}), 10 s vs 100 s of the same video",
        b.cores,
        b.model.display()
    );
    let Some(bin) = worker_binary() else {
        println!(
            "skipped: no release vidinfer-worker binary; build the workspace first \
             (scripts/bench.sh does)"
        );
        return;
    };
    let mib = |kib: i64| kib as f64 / 1024.0;
    println!(
        "  spawned by fork from this process, whose RSS is {:.1} MiB ({:.1} MiB anonymous): \
         a child's ru_maxrss cannot read below what a fork copies",
        status_kib("self", "VmRSS").map_or(f64::NAN, mib),
        status_kib("self", "RssAnon").map_or(f64::NAN, mib)
    );
    println!(
        "{:<14} {:>14} {:>15} {:>9} {:>11}",
        "video", "peak RSS MiB", "peak anon MiB", "seconds", "JSON bytes"
    );
    let mut runs = Vec::new();
    for (name, video) in [("shapes 10s", short), ("shapes 100s", long)] {
        let out = b.scratch.path().join(format!("memory-{}.json", runs.len()));
        let log = out.with_extension("log");
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .arg("--model")
            .arg(&b.model)
            .args(["--frame-interval", &INTERVAL.to_string()])
            .args(["--torch-threads", &b.cores.to_string()])
            .arg(video)
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        match measure(&mut cmd) {
            Ok(u) => {
                let bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
                println!(
                    "{name:<14} {:>14.1} {:>15.1} {:>9.2} {bytes:>11}",
                    mib(u.peak_kib),
                    mib(u.anon_kib),
                    u.seconds
                );
                runs.push((u, bytes));
            }
            Err(e) => {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                println!("{name:<14} failed: {e}: {}", log.trim());
                return;
            }
        }
    }
    let (short, long) = (&runs[0], &runs[1]);
    println!(
        "peak RSS 100 s / 10 s = {:.3}, {:+.1} MiB (target <= 1.1); anonymous only: {:.3}, \
         {:+.1} MiB",
        long.0.peak_kib as f64 / short.0.peak_kib as f64,
        mib(long.0.peak_kib - short.0.peak_kib),
        long.0.anon_kib as f64 / short.0.anon_kib as f64,
        mib(long.0.anon_kib - short.0.anon_kib)
    );
    println!(
        "  part of any growth is output, not frame memory: the document is held whole until \
         it is written, {:.1} KiB more JSON for the 100 s video (frames in flight are \
         bounded by the engine's channels)",
        (long.1 as f64 - short.1 as f64) / 1024.0
    );
}

/// One run of the Python reference: (seconds, frames kept, forward seconds).
fn python_requests(b: &Bench, input: &S3Uri) -> Result<(f64, u64, f64), String> {
    python_run(b, &b.model, input, INTERVAL, REQUESTS)
}

/// `requests` requests of `input` through the old pipeline's code with `model`, every
/// `interval`th frame: (seconds, frames kept, forward seconds), timed by the script
/// itself after its imports, model load and warm-up.
fn python_run(
    b: &Bench,
    model: &Path,
    input: &S3Uri,
    interval: u32,
    requests: usize,
) -> Result<(f64, u64, f64), String> {
    let out = Command::new(venv_python())
        .arg(root().join("benches/reference/old_pipeline.py"))
        .arg("request")
        .arg(model)
        .args(["--input", &input.to_string()])
        .args(["--output", &b.uri("out/python.json").to_string()])
        .args(["--repeat", &requests.to_string()])
        .args(["--interval", &interval.to_string()])
        .args(["--size", "1024"])
        .args(["--threads", &b.cores.to_string()])
        .envs(b.moto.env())
        .output()
        .map_err(|e| format!("not run: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("unreadable output: {e}"))?;
    Ok((
        v["seconds"].as_f64().unwrap_or(f64::NAN),
        v["kept"].as_u64().unwrap_or(0),
        v["forward_s"].as_f64().unwrap_or(f64::NAN),
    ))
}

/// The same requests through vidinfer, `CONCURRENCY` at a time on one shared engine:
/// (seconds, frames, summed forward seconds).
fn vidinfer_requests(b: &Bench, engine: &Engine, input: &S3Uri) -> (f64, u64, f64) {
    let params = Params {
        sampling: Sampling::EveryNth(INTERVAL),
        resize: Resize::Stretch {
            width: 1024,
            height: 1024,
        },
        format: OutputFormat::Legacy,
        ..Params::default()
    };
    let (secs, results) = b.rt.block_on(async {
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let start = Instant::now();
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|i| {
                let slots = slots.clone();
                let params = params.clone();
                let output = b.uri(&format!("out/vidinfer-{i}.json"));
                async move {
                    let _slot = slots.acquire_owned().await.unwrap();
                    request(b, engine, input, &output, &params).await
                }
            })
            .collect();
        let results = futures_util::future::join_all(tasks).await;
        (start.elapsed().as_secs_f64(), results)
    });
    (
        secs,
        results.iter().map(|r| r.stats.frames_sampled).sum(),
        results.iter().map(|r| r.stats.infer_s).sum(),
    )
}

fn section_throughput(b: &Bench, input: &S3Uri) {
    println!();
    println!(
        "[5] whole-request throughput: {REQUESTS} requests of the 10 s shapes video (S3 on moto \
         in, JSON to S3 out), every {INTERVAL}th frame stretched to 1024x1024, model {}, \
         {} torch threads; the two pipelines take turns, best of {THROUGHPUT_ROUNDS} rounds; \
         model loading is not timed on either side",
        b.model.display(),
        b.cores
    );
    let engine = Engine::new(load(&b.model, b.cores, 4));
    let fastest = |a: Option<(f64, u64, f64)>, r: (f64, u64, f64)| match a {
        Some(a) if a.0 <= r.0 => Some(a),
        _ => Some(r),
    };
    let (mut python, mut ours) = (None, None);
    let mut python_error = None;
    for _ in 0..THROUGHPUT_ROUNDS {
        if python_error.is_none() {
            match python_requests(b, input) {
                Ok(r) => python = fastest(python, r),
                Err(e) => python_error = Some(e),
            }
        }
        ours = fastest(ours, vidinfer_requests(b, &engine, input));
    }
    println!(
        "{:<46} {:>5} {:>7} {:>8} {:>10} {:>12}",
        "pipeline", "reqs", "frames", "seconds", "forward_s", "requests/min"
    );
    let row = |name: &str, (secs, frames, forward): (f64, u64, f64)| {
        let rate = REQUESTS as f64 * 60.0 / secs;
        println!("{name:<46} {REQUESTS:>5} {frames:>7} {secs:>8.2} {forward:>10.2} {rate:>12.1}");
        rate
    };
    let py_rate = python.map(|r| row("python reference (sequential, cv2, batch 24)", r));
    if let Some(e) = python_error {
        println!("python reference failed: {e}");
    }
    let rate = row(
        &format!("vidinfer ({CONCURRENCY} in flight, shared engine, batch 4)"),
        ours.expect("vidinfer ran"),
    );
    if let Some(py) = py_rate {
        println!(
            "throughput vidinfer / python = {:.2}x requests/min (target >= 1.0)",
            rate / py
        );
    }
}

/// Section 5d: one request at a time, the old pipeline's code against vidinfer's
/// worker path, on the fixture model (the 10 s shapes video, every 5th frame) and, when
/// it can be exported, a ResNet-50-FPN Mask R-CNN with random weights (the 1080p clip,
/// every 30th frame: 10 frames of seconds each). Both stretch the kept frames to
/// 1024x1024 and write the legacy array, with the same torch threads; each keeps its
/// own batching (old: 24 frames a call, vidinfer: 4). The rounds alternate the
/// pipelines; the fastest of each is reported.
fn section_end_to_end(b: &Bench, shapes10: &S3Uri) {
    println!();
    println!(
        "[5d] end to end, one request at a time: the old pipeline's code (cv2 decode, \
         INTER_AREA to 1024x1024, batches of 24) vs vidinfer (FFmpeg, stretch to 1024x1024, \
         batches of 4, legacy output); same video, same frames, {} torch threads; S3 on moto \
         in and out; imports, model load and warm-up outside the timing on both sides",
        b.cores
    );
    let hd1080 = x264_clip(&b.cache, 1920, 1080);
    let mut cases = vec![(
        "fixture model, shapes 320x240 10 s",
        b.model.clone(),
        shapes10.clone(),
        INTERVAL,
        3,
    )];
    match heavy_model(&b.cache) {
        Some(heavy) => cases.push((
            "R50-FPN (random weights), 1080p 10 s",
            heavy,
            b.upload(&hd1080, "in/1080p-10s.mp4"),
            30,
            2,
        )),
        None => println!("  (no ResNet-50-FPN row: the model could not be exported)"),
    }
    println!(
        "{:<38} {:>6} {:>10} {:>12} {:>10} {:>12} {:>9}",
        "model, video", "frames", "old s", "old fwd s", "vidinfer s", "vidinfer fwd", "speed-up"
    );
    for (name, model, input, interval, rounds) in cases {
        let engine = Engine::new(load(&model, b.cores, 4));
        let params = Params {
            sampling: Sampling::EveryNth(interval),
            resize: Resize::Stretch {
                width: 1024,
                height: 1024,
            },
            format: OutputFormat::Legacy,
            ..Params::default()
        };
        let (mut old, mut ours): (Option<(f64, u64, f64)>, Option<Timed>) = (None, None);
        for _ in 0..rounds {
            match python_run(b, &model, &input, interval, 1) {
                Ok(r) if old.is_none_or(|o| r.0 < o.0) => old = Some(r),
                Ok(_) => {}
                Err(e) => {
                    println!("  old pipeline failed: {e}");
                    break;
                }
            }
            let output = b.uri("out/vidinfer-e2e.json");
            let t = b.rt.block_on(request(b, &engine, &input, &output, &params));
            if ours.as_ref().is_none_or(|o| t.wall_s < o.wall_s) {
                ours = Some(t);
            }
        }
        let ours = ours.expect("vidinfer ran");
        let Some(old) = old else { continue };
        if old.1 != ours.stats.frames_sampled {
            println!(
                "  frames differ: old {} vidinfer {}",
                old.1, ours.stats.frames_sampled
            );
        }
        println!(
            "{name:<38} {:>6} {:>10.2} {:>12.2} {:>10.2} {:>12.2} {:>8.2}x",
            ours.stats.frames_sampled,
            old.0,
            old.2,
            ours.wall_s,
            ours.stats.infer_s,
            old.0 / ours.wall_s
        );
    }
    println!("  speed-up = old seconds / vidinfer seconds for the same request (higher: vidinfer faster)");
}

/// The sample video's ground truth (scripts/make_sample_video.py): boxes and classes.
#[derive(serde::Deserialize)]
struct Truth {
    truth: Vec<TruthFrame>,
}

#[derive(serde::Deserialize)]
struct TruthFrame {
    objects: Vec<TruthObject>,
}

#[derive(serde::Deserialize)]
struct TruthObject {
    label_id: i64,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

fn box_iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// (recall, precision): each ground-truth object matched to the best unused detection
/// of its class (score >= 0.5), found when their boxes overlap with IoU >= 0.5.
fn recall(doc: &vidinfer::schema::V2Output, truth: &Truth) -> (f64, f64) {
    let (mut found, mut objects, mut detections) = (0usize, 0usize, 0usize);
    for f in &doc.frames {
        let dets: Vec<_> = f.detections.iter().filter(|d| d.score >= 0.5).collect();
        detections += dets.len();
        let mut used = vec![false; dets.len()];
        for o in &truth.truth[f.index as usize].objects {
            objects += 1;
            let best = dets
                .iter()
                .enumerate()
                .filter(|(j, d)| !used[*j] && d.label_id == o.label_id)
                .map(|(j, d)| (j, box_iou(o.bbox, d.bbox)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((j, iou)) = best {
                if iou >= 0.5 {
                    used[j] = true;
                    found += 1;
                }
            }
        }
    }
    (
        found as f64 / objects.max(1) as f64,
        found as f64 / detections.max(1) as f64,
    )
}

/// The variants of section 5b: (name, variant.py flags, vidinfer masks). No flags:
/// the fixture as it is.
const KNOB_VARIANTS: [(&str, &[&str], bool); 6] = [
    ("as exported (240/320)", &[], true),
    ("masks off in vidinfer", &[], false),
    (
        "min_size 160/max 214",
        &["--min-size", "160", "--max-size", "214"],
        true,
    ),
    (
        "min_size 320/max 427",
        &["--min-size", "320", "--max-size", "427"],
        true,
    ),
    ("detections 5 (of 20)", &["--detections", "5"], true),
    ("no mask head (rebuilt)", &["--no-masks"], true),
];

/// A variant ready to run: its name, an engine on its model, the job's parameters.
type Knob = (&'static str, Engine, Params);

/// One timed run of a variant: seconds, the job's output, its v2 document.
type KnobRun = (f64, JobOutput, vidinfer::schema::V2Output);

/// Make (with `benches/reference/variant.py`) and load every variant of
/// [`KNOB_VARIANTS`]; one that cannot be made is reported in its row and left out.
fn load_knobs(b: &Bench, fixture: &Path) -> Vec<Knob> {
    let dir = b.scratch.path().join("variants");
    let mut loaded = Vec::new();
    for (i, (name, flags, masks)) in KNOB_VARIANTS.iter().enumerate() {
        let path = if flags.is_empty() {
            fixture.to_path_buf()
        } else {
            let out = dir.join(format!("v{i}/model.pt"));
            let made = Command::new(venv_python())
                .arg(root().join("benches/reference/variant.py"))
                .arg(fixture)
                .arg(&out)
                .args(*flags)
                .output()
                .expect("run python");
            if !made.status.success() {
                println!(
                    "{name:<24} not made: {}",
                    String::from_utf8_lossy(&made.stderr).trim()
                );
                continue;
            }
            out
        };
        let params = Params {
            sampling: Sampling::EveryNth(2),
            resize: Resize::Original,
            min_score: Some(0.5),
            masks: *masks,
            ..Params::default()
        };
        loaded.push((*name, Engine::new(load(&path, b.cores, 4)), params));
    }
    loaded
}

/// Run one variant on `video`, timing the job and its v2 document.
fn run_knob(b: &Bench, video: &Path, engine: &Engine, params: &Params) -> KnobRun {
    let job = Job {
        source: Source::Path(video.to_path_buf()),
        params: params.clone(),
    };
    let start = Instant::now();
    let out = b.rt.block_on(engine.run(job, |_| {})).expect("job runs");
    // The document is part of the work masks cost (RLE encoding).
    let doc = out.assembled(engine.model(), params).v2();
    (start.elapsed().as_secs_f64(), out, doc)
}

/// Run every variant in turns, [`KNOB_ROUNDS`] rounds, so that a burst of other work
/// on the machine slows one round of all of them rather than one variant. Returns the
/// fastest run of each.
fn run_knobs(b: &Bench, video: &Path, loaded: &[Knob]) -> Vec<Option<KnobRun>> {
    let mut best: Vec<Option<KnobRun>> = loaded.iter().map(|_| None).collect();
    for _ in 0..KNOB_ROUNDS {
        for ((_, engine, params), best) in loaded.iter().zip(&mut best) {
            let r = run_knob(b, video, engine, params);
            if best.as_ref().is_none_or(|b| r.0 < b.0) {
                *best = Some(r);
            }
        }
    }
    best
}

/// Print a row per variant; returns (name, frames/s against the first, recall) of each.
fn knob_rows(
    loaded: &[Knob],
    best: Vec<Option<KnobRun>>,
    truth: &Truth,
) -> Vec<(&'static str, f64, f64)> {
    let mut base = None;
    let mut rows = Vec::new();
    for ((name, _, _), best) in loaded.iter().zip(best) {
        let (secs, out, doc) = best.expect("every variant ran");
        let frames = out.stats.frames_sampled;
        let fps = frames as f64 / secs;
        let (rec, prec) = recall(&doc, truth);
        let dets: usize = doc.frames.iter().map(|f| f.detections.len()).sum();
        let b0 = *base.get_or_insert(fps);
        println!(
            "{name:<24} {frames:>7} {fps:>9.1} {:>8.1} {dets:>10} {rec:>7.3} {prec:>9.3}  {:.2}x",
            out.stats.infer_s * 1000.0 / frames as f64,
            fps / b0
        );
        rows.push((*name, fps / b0, rec));
    }
    rows
}

fn section_knobs(b: &Bench) {
    let fixture = root().join("tests/fixtures/model/model.pt");
    let video = root().join("tests/fixtures/sample/shapes.mp4");
    let truth: Truth = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/sample/shapes.truth.json")).unwrap(),
    )
    .unwrap();
    println!();
    println!(
        "[5b] knobs: the fixture model on the sample video (320x240, every 2nd frame, fed at \
         its own size), {} torch threads, batch 4, best of {KNOB_ROUNDS} rounds; recall and precision at score \
         >= 0.5, class match and box IoU >= 0.5 against shapes.truth.json",
        b.cores
    );
    println!(
        "{:<24} {:>7} {:>9} {:>8} {:>10} {:>7} {:>9}  frames/s vs as exported",
        "variant", "frames", "frames/s", "ms/fwd", "detections", "recall", "precision"
    );
    // Make and load every variant first, then run them in turns.
    let loaded = load_knobs(b, &fixture);
    let best = run_knobs(b, &video, &loaded);
    let rows = knob_rows(&loaded, best, &truth);
    if let Some((name, speed, rec)) = rows
        .iter()
        .filter(|r| r.2 >= rows.first().map_or(1.0, |b| b.2) - 0.02)
        .max_by(|x, y| x.1.total_cmp(&y.1))
    {
        println!(
            "knobs: fastest variant within 0.02 recall of as exported: {name} at {speed:.2}x \
             frames/s, recall {rec:.3} (informational: no target)"
        );
    }
    println!(
        "  masks off in vidinfer: the forward still computes and pastes every mask (the \
         compiled model always does); vidinfer skips thresholding and copying them out and \
         their RLE encoding. A mask-free forward needs the rebuilt model."
    );
}

/// Section 5c: each case's two jobs (the format's default resize, then `resize=model`)
/// in turns, [`KNOB_ROUNDS`] rounds; the fastest run of each, its frames/s and the
/// ratio.
fn section_model_size(b: &Bench) {
    let fixture = root().join("tests/fixtures/model/model.pt");
    let sample = root().join("tests/fixtures/sample/shapes.mp4");
    let big = b.cache.join("shapes-960x720.mp4");
    if !big.exists() {
        let args = [
            "-i",
            sample.to_str().unwrap(),
            "-vf",
            "scale=960:720",
            "-c:v",
            "libx264",
            "-crf",
            "16",
            "-pix_fmt",
            "yuv420p",
        ];
        ffmpeg(&args, &big);
    }
    println!();
    println!(
        "[5c] model size: the fixture model (input 240/320), every 2nd frame, {} torch \
         threads, batch 4, whole in-process jobs (decode, model, document), best of \
         {KNOB_ROUNDS} rounds in turns",
        b.cores
    );
    println!(
        "{:<44} {:>9} {:>7} {:>9} {:>9} {:>9}  frames/s vs default",
        "job", "picture", "frames", "frames/s", "decode s", "ms/fwd"
    );
    let engine = Engine::new(load(&fixture, b.cores, 4));
    let params = |a: &str| {
        Overrides::from_custom_attributes(a)
            .and_then(|o| o.apply(&Params::default()))
            .expect("valid parameters")
    };
    let cases = [
        ("legacy, sample 320x240", &sample, "format=legacy"),
        ("v2 + masks, sample at 960x720", &big, "masks=true"),
    ];
    for (name, video, attrs) in cases {
        let paths = [
            ("default", params(&format!("frame_interval=2;{attrs}"))),
            (
                "resize=model",
                params(&format!("frame_interval=2;{attrs};resize=model")),
            ),
        ];
        let mut best: [Option<(f64, JobOutput)>; 2] = [None, None];
        for _ in 0..KNOB_ROUNDS {
            for ((_, p), best) in paths.iter().zip(&mut best) {
                let job = Job {
                    source: Source::Path(video.to_path_buf()),
                    params: p.clone(),
                };
                let start = Instant::now();
                let out = b.rt.block_on(engine.run(job, |_| {})).expect("job runs");
                let _document = out.document(engine.model(), p);
                let secs = start.elapsed().as_secs_f64();
                if best.as_ref().is_none_or(|b| secs < b.0) {
                    *best = Some((secs, out));
                }
            }
        }
        let mut base = None;
        for ((path, _), best) in paths.iter().zip(best) {
            let (secs, out) = best.expect("every path ran");
            let frames = out.stats.frames_sampled;
            let fps = frames as f64 / secs;
            let b0 = *base.get_or_insert(fps);
            let meta = out.frames[0].meta;
            println!(
                "{:<44} {:>9} {frames:>7} {fps:>9.1} {:>9.3} {:>9.1}  {:.2}x",
                format!("{name}, {path}"),
                format!("{}x{}", meta.width, meta.height),
                out.stats.decode_s,
                out.stats.infer_s * 1000.0 / frames as f64,
                fps / b0
            );
        }
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = Command::new("lscpu")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Model name:").map(|m| m.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let sections = std::env::var("VIDINFER_BENCH_SECTIONS")
        .unwrap_or_else(|_| "overhead,memory,throughput,endtoend,knobs,modelsize".into());
    let wants = |s: &str| sections.split(',').any(|x| x.trim() == s);
    let model = std::env::var_os("VIDINFER_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tests/fixtures/model/model.pt"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("pipeline benchmark: {}", machine());
    println!(
        "  numbers are wall-clock on this machine: other work running at the same time \
         inflates them"
    );

    let cache = cache_dir();
    let shapes10 = shapes(&cache, 10);
    let shapes100 = shapes(&cache, 100);
    let hd = x264_clip(&cache, 1280, 720);

    // Two runtime workers, as `vidinfer-worker` builds its runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let moto = Moto::start();
    let sdk = rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "bench",
            ))
            .load(),
    );
    let storage = Storage::new(&sdk);
    let bucket = format!(
        "vidinfer-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    rt.block_on(storage.client().create_bucket().bucket(&bucket).send())
        .expect("create bucket on moto");
    let b = Bench {
        rt,
        moto,
        storage,
        bucket,
        model,
        cores,
        cache,
        scratch: tempfile::tempdir().expect("scratch dir"),
    };
    // Memory first: its children are forked from this process, which is smallest
    // before any model has been loaded here.
    if wants("memory") {
        section_memory(&b, &shapes10, &shapes100);
    }
    let shapes10_uri = b.upload(&shapes10, "in/shapes-10s.mp4");
    if wants("overhead") {
        let hd_uri = b.upload(&hd, "in/720p-10s.mp4");
        section_overhead(&b, &shapes10_uri, &hd_uri);
    }
    if wants("throughput") {
        section_throughput(&b, &shapes10_uri);
    }
    if wants("endtoend") {
        section_end_to_end(&b, &shapes10_uri);
    }
    if wants("knobs") {
        section_knobs(&b);
    }
    if wants("modelsize") {
        section_model_size(&b);
    }
}
