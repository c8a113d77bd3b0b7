//! Decode + sample throughput: sampled frames/s at interval 1 and 30 on 720p and 1080p
//! H.264 with B-frames, with and without non-reference skipping and frame threads, and
//! against the old pipeline's sampler (`benches/reference/old_pipeline.py sample`: cv2
//! `VideoCapture` reading and converting every frame to BGR, INTER_AREA resize of kept
//! frames to 1024x1024) on the same file in the same run. Prints a table with ratios
//! against the plain configuration and against that reference.
//!
//! Run: `scripts/bench.sh decode` (or `cargo bench --bench decode` after sourcing
//! scripts/env.sh). Test videos are generated once into `$VIDINFER_CACHE/bench/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::{cache_dir, x264_clip};
use vidinfer::video::{DecodeOptions, Decoder, Resize, Sampling};

mod support;

struct Run {
    kept: u64,
    decoded: u64,
    seconds: f64,
}

fn run(path: &Path, interval: u32, skip: bool, threads: usize) -> Run {
    let opts = DecodeOptions {
        sampling: Sampling::EveryNth(interval),
        // The legacy pipeline's frame size.
        resize: Resize::Stretch {
            width: 1024,
            height: 1024,
        },
        skip_non_ref: skip,
        threads,
        ..Default::default()
    };
    (0..3)
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

/// The old pipeline's sampler on the same file: best of 3, timed inside Python (the
/// interpreter's start and imports are not counted). `None` when the venv lacks OpenCV.
fn reference(path: &Path, interval: u32) -> Option<Run> {
    let python = std::env::var_os("VIDINFER_VENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/old_pipeline.py");
    let mut best: Option<Run> = None;
    for _ in 0..3 {
        let out = Command::new(&python)
            .arg(&script)
            .arg("sample")
            .arg(path)
            .args(["--interval", &interval.to_string()])
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
        let run = Run {
            kept: v["kept"].as_u64()?,
            decoded: v["read"].as_u64()?,
            seconds: v["seconds"].as_f64()?,
        };
        if best.as_ref().is_none_or(|b| run.seconds < b.seconds) {
            best = Some(run);
        }
    }
    best
}

/// The rows of one video at one interval: the cv2 reference (when it runs), then each
/// configuration of skipping × frame threads. Returns the engine's configuration
/// (skipping on, FFmpeg's thread count) against the reference, `None` without one.
fn interval_rows(h: u32, path: &Path, interval: u32) -> Option<f64> {
    let cv2 = reference(path, interval);
    let cv2_rate = cv2.as_ref().map(|r| r.kept as f64 / r.seconds);
    if let Some(r) = &cv2 {
        println!(
            "{:<8} {:>8} {:>9} {:>7} {:>6} {:>8} {:>10.3} {:>10.1} {:>9} {:>9}",
            format!("{h}p"),
            interval,
            "cv2 (old)",
            "cv2",
            r.kept,
            r.decoded,
            r.seconds,
            r.kept as f64 / r.seconds,
            "",
            "1.00x"
        );
    }
    let mut plain = None;
    let mut engine = None;
    for (skip, threads) in [(false, 1), (false, 0), (true, 1), (true, 0)] {
        let r = run(path, interval, skip, threads);
        let rate = r.kept as f64 / r.seconds;
        let base = *plain.get_or_insert(rate);
        let vs_cv2 = cv2_rate.map(|c| rate / c);
        println!(
            "{:<8} {:>8} {:>9} {:>7} {:>6} {:>8} {:>10.3} {:>10.1} {:>8.2}x {:>9}",
            format!("{h}p"),
            interval,
            if skip { "non-ref" } else { "off" },
            if threads == 0 {
                "auto".to_string()
            } else {
                threads.to_string()
            },
            r.kept,
            r.decoded,
            r.seconds,
            rate,
            rate / base,
            vs_cv2.map_or("-".into(), |v| format!("{v:.2}x"))
        );
        if skip && threads == 0 {
            engine = vs_cv2;
        }
    }
    engine
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let dir = cache_dir();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "decode benchmark: {cores} cores; best of 3 runs; frames stretched to 1024x1024 RGB24"
    );
    println!(
        "{:<8} {:>8} {:>9} {:>7} {:>6} {:>8} {:>10} {:>10} {:>9} {:>9}",
        "video",
        "interval",
        "skip",
        "threads",
        "kept",
        "decoded",
        "seconds",
        "kept/s",
        "vs plain",
        "vs cv2"
    );
    let mut summary = Vec::new();
    for (w, h) in [(1280, 720), (1920, 1080)] {
        let path = x264_clip(&dir, w, h);
        for interval in [1u32, 30] {
            let engine = interval_rows(h, &path, interval);
            // The engine's configuration against the reference, at interval 30.
            if interval == 30 {
                summary.push((h, engine));
            }
        }
    }
    for (h, ratio) in summary {
        let target = if h >= 1080 { 2.0 } else { 1.5 };
        match ratio {
            Some(r) => println!(
                "{h}p interval 30: vidinfer / cv2 sampler = {r:.2}x (target >= {target:.1}x)"
            ),
            None => println!("{h}p interval 30: no cv2 reference (OpenCV missing from the venv)"),
        }
    }
}
