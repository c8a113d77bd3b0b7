//! Decode + sample throughput: sampled frames/s on 720p and 1080p H.264 with B-frames,
//! every 1st, 2nd, 5th and 30th frame and at 10 and 30 fps, against the old pipeline's
//! sampler on the same file in the same run; and keyframe sampling against every 30th
//! frame on a 10-minute 1080p clip.
//!
//! The reference is `benches/reference/old_pipeline.py sample`: the old sampler's own
//! loop (cv2 `VideoCapture.read` on every frame, INTER_AREA resize of kept frames to
//! 1024x1024, batches of 24) with cv2's threading defaults, best of 3 timed inside one
//! Python process after `import cv2` (the interpreter's start and imports are not
//! counted). vidinfer: best of 3, opening the video included, frames stretched to
//! 1024x1024 RGB24. The reference samples by interval only, so an fps row is compared
//! with the reference at the interval that keeps the same frames (30 fps clips: 10 fps
//! = every 3rd, 30 fps = every frame).
//!
//! Run: `scripts/bench.sh decode` (or `cargo bench --bench decode` after sourcing
//! scripts/env.sh). Arguments after `--` pick cases by substring of their key
//! (`720p/every1`, `1080p/fps10`, `1080p-10min/keyframes`, ...); `--no-reference`
//! skips the Python reference and `--engine-only` the configurations the engine does
//! not use (both for profiling). Test videos are generated once into
//! `$VIDINFER_CACHE/bench/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::{cache_dir, long_clip, x264_clip};
use vidinfer::video::{DecodeOptions, Decoder, Resize, Sampling};

mod support;

/// Timed runs per vidinfer configuration and per reference case (the best is shown).
const RUNS: usize = 3;

struct Run {
    kept: u64,
    decoded: u64,
    seconds: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.kept as f64 / self.seconds
    }
}

/// One vidinfer configuration: non-reference skipping and FFmpeg's decoder threads.
#[derive(Clone, Copy)]
struct Config {
    skip: bool,
    /// 0: FFmpeg's choice (one per core), what the engine uses.
    threads: usize,
}

impl Config {
    const ENGINE: Config = Config {
        skip: true,
        threads: 0,
    };

    fn label(self) -> String {
        let threads = match self.threads {
            0 => "auto threads".to_string(),
            1 => "1 thread".to_string(),
            n => format!("{n} threads"),
        };
        let skip = if self.skip { "skip" } else { "no skip" };
        if self.skip && self.threads == 0 {
            format!("vidinfer ({threads}, {skip})")
        } else {
            format!("  {threads}, {skip}")
        }
    }
}

fn run(path: &Path, sampling: Sampling, config: Config, runs: usize) -> Run {
    let opts = DecodeOptions {
        sampling,
        // The legacy pipeline's frame size.
        resize: Resize::Stretch {
            width: 1024,
            height: 1024,
        },
        skip_non_ref: config.skip,
        threads: config.threads,
        ..Default::default()
    };
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let mut dec = Decoder::open(path, opts.clone()).expect("open");
            let mut kept = 0;
            while let Some(f) = dec.next_frame().expect("decode") {
                std::hint::black_box(&f.rgb);
                kept += 1;
            }
            Run {
                kept,
                decoded: dec.frames_decoded(),
                seconds: start.elapsed().as_secs_f64(),
            }
        })
        .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
        .unwrap()
}

/// The old pipeline's sampler on the same file: one Python process, best of [`RUNS`]
/// timed inside it. `None` when the venv lacks OpenCV.
fn reference(path: &Path, interval: u32) -> Option<Run> {
    let python = std::env::var_os("VIDINFER_VENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/old_pipeline.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg("sample")
        .arg(path)
        .args(["--interval", &interval.to_string()])
        .args(["--repeat", &RUNS.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "reference sampler failed (scripts/bench.sh installs OpenCV): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Run {
        kept: v["kept"].as_u64()?,
        decoded: v["read"].as_u64()?,
        seconds: v["seconds"].as_f64()?,
    })
}

fn describe(s: Sampling) -> String {
    match s {
        Sampling::EveryNth(n) => format!("every {n}"),
        Sampling::Fps(f) => format!("{f} fps"),
        Sampling::Keyframes => "keyframes".into(),
    }
}

fn key(s: Sampling) -> String {
    match s {
        Sampling::EveryNth(n) => format!("every{n}"),
        Sampling::Fps(f) => format!("fps{f}"),
        Sampling::Keyframes => "keyframes".into(),
    }
}

fn header() {
    println!(
        "{:<12} {:<10} {:<34} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "video", "sampling", "decoder", "kept", "decoded", "seconds", "kept/s", "vs cv2"
    );
}

fn row(video: &str, sampling: &str, who: &str, r: &Run, vs: &str) {
    println!(
        "{:<12} {:<10} {:<34} {:>6} {:>8} {:>8.3} {:>8.1} {:>8}",
        video,
        sampling,
        who,
        r.kept,
        r.decoded,
        r.seconds,
        r.rate(),
        vs
    );
}

/// What the command line asked for: case filters, whether to run the reference and
/// the configurations the engine does not use.
struct Selection {
    filters: Vec<String>,
    reference: bool,
    all_configs: bool,
}

impl Selection {
    fn from_args() -> Selection {
        // `cargo bench` passes --bench; other flags are ignored too.
        let args: Vec<String> = std::env::args().skip(1).collect();
        Selection {
            filters: args
                .iter()
                .filter(|a| !a.starts_with("--"))
                .cloned()
                .collect(),
            reference: !args.iter().any(|a| a == "--no-reference"),
            all_configs: !args.iter().any(|a| a == "--engine-only"),
        }
    }

    fn wants(&self, key: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| key.contains(f.as_str()))
    }
}

/// The engine against the reference for one video and sampling.
struct Ratio {
    video: String,
    sampling: String,
    /// The reference's sampling when it is not the same words (fps rows).
    against: Option<String>,
    ratio: Option<f64>,
}

fn main() {
    let sel = Selection::from_args();
    let dir = cache_dir();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "decode benchmark: {cores} cores; best of {RUNS} runs; frames stretched to 1024x1024 RGB24"
    );
    println!(
        "cv2 (old): benches/reference/old_pipeline.py sample --repeat {RUNS} (VideoCapture.read \
         on every frame, INTER_AREA to 1024x1024, batches of 24; timed in-process after import)"
    );
    header();
    let mut ratios = Vec::new();
    for (w, h) in [(1280, 720), (1920, 1080)] {
        let video = format!("{h}p");
        let path = x264_clip(&dir, w, h);
        // The reference by interval, run once per interval a row needs.
        let mut refs: Vec<(u32, Option<Run>)> = Vec::new();
        let samplings = [
            Sampling::EveryNth(1),
            Sampling::EveryNth(2),
            Sampling::EveryNth(5),
            Sampling::EveryNth(30),
            Sampling::Fps(10.0),
            Sampling::Fps(30.0),
        ];
        for sampling in samplings {
            let case = format!("{video}/{}", key(sampling));
            if !sel.wants(&case) {
                continue;
            }
            // The clips are 30 fps: the interval keeping the same frames as an fps.
            let interval = match sampling {
                Sampling::EveryNth(n) => n,
                Sampling::Fps(f) => (30.0 / f).round() as u32,
                Sampling::Keyframes => unreachable!("not among these cases"),
            };
            let label = describe(sampling);
            let against = matches!(sampling, Sampling::Fps(_)).then(|| format!("every {interval}"));
            if sel.reference && !refs.iter().any(|(i, _)| *i == interval) {
                let r = reference(&path, interval);
                if let Some(r) = &r {
                    row(
                        &video,
                        &format!("every {interval}"),
                        "cv2 (old sampler)",
                        r,
                        "1.00x",
                    );
                }
                refs.push((interval, r));
            }
            let cv2_rate = refs
                .iter()
                .find(|(i, _)| *i == interval)
                .and_then(|(_, r)| r.as_ref())
                .map(Run::rate);
            // Every configuration at 1 and 30 (where skipping and threads matter most),
            // the engine's alone elsewhere.
            let configs: &[Config] =
                if sel.all_configs && matches!(sampling, Sampling::EveryNth(1 | 30)) {
                    &[
                        Config {
                            skip: false,
                            threads: 1,
                        },
                        Config {
                            skip: false,
                            threads: 0,
                        },
                        Config {
                            skip: true,
                            threads: 1,
                        },
                        Config::ENGINE,
                    ]
                } else {
                    &[Config::ENGINE]
                };
            for &config in configs {
                let r = run(&path, sampling, config, RUNS);
                let vs = cv2_rate.map(|c| r.rate() / c);
                let vs_text = match (vs, &against) {
                    (Some(v), Some(a)) => format!("{v:.2}x ({a})"),
                    (Some(v), None) => format!("{v:.2}x"),
                    (None, _) => "-".into(),
                };
                row(&video, &label, &config.label(), &r, &vs_text);
                if config.skip && config.threads == 0 {
                    ratios.push(Ratio {
                        video: video.clone(),
                        sampling: label.clone(),
                        against: against.clone(),
                        ratio: vs,
                    });
                }
            }
        }
    }
    keyframes(&sel, &dir);
    println!();
    println!("vidinfer (auto threads, skip) / cv2 old sampler, target >= 1.5x at every interval:");
    for r in ratios {
        let against = r
            .against
            .map(|a| format!(" against cv2 {a}"))
            .unwrap_or_default();
        match r.ratio {
            Some(v) => println!(
                "  {} {}{against}: {v:.2}x{}",
                r.video,
                r.sampling,
                if v >= 1.5 { "" } else { "  (below 1.5x)" }
            ),
            None => println!("  {} {}: no cv2 reference", r.video, r.sampling),
        }
    }
}

/// Keyframes against every 30th frame on a 10-minute 1080p clip: sampled frames/s and
/// how many pictures the decoder had to produce. Keyframes best of [`RUNS`], every
/// 30th one run (it decodes all 18,000 frames: the clip has no B-frames to skip).
fn keyframes(sel: &Selection, dir: &Path) {
    let video = "1080p-10min";
    let cases = [Sampling::EveryNth(30), Sampling::Keyframes];
    if !cases
        .iter()
        .any(|s| sel.wants(&format!("{video}/{}", key(*s))))
    {
        return;
    }
    let path = long_clip(dir);
    let mut rates = Vec::new();
    for sampling in cases {
        if !sel.wants(&format!("{video}/{}", key(sampling))) {
            continue;
        }
        for config in [
            Config {
                skip: true,
                threads: 1,
            },
            Config::ENGINE,
        ] {
            // One thread only where it differs (keyframes); every 30th with one thread
            // would add minutes.
            if config.threads != 0 && (!sel.all_configs || sampling != Sampling::Keyframes) {
                continue;
            }
            let runs = if sampling == Sampling::Keyframes {
                RUNS
            } else {
                1
            };
            let r = run(&path, sampling, config, runs);
            row(video, &describe(sampling), &config.label(), &r, "-");
            if config.threads == 0 {
                rates.push((sampling, r));
            }
        }
    }
    if let [(_, every), (_, key)] = rates.as_slice() {
        println!(
            "{video}: keyframes {:.1} sampled frames/s from {} decoded pictures; every 30th \
             {:.1} frames/s from {} decoded ({:.1}x faster per video, {:.1}x fewer pictures)",
            key.rate(),
            key.decoded,
            every.rate(),
            every.decoded,
            every.seconds / key.seconds,
            every.decoded as f64 / key.decoded.max(1) as f64
        );
    }
}
