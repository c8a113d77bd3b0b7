//! Model forward throughput by batch size, and Rust (tch) vs Python (torch) forward time
//! on the same TorchScript file, frames and thread count. Prints ratios measured in this
//! run; never fails.
//!
//! Run: `scripts/bench.sh model` (or `cargo bench --bench model` after sourcing
//! scripts/env.sh). Model: `VIDINFER_BENCH_MODEL` (default: the fixture model);
//! video: `VIDINFER_BENCH_VIDEO` (default: the bundled sample); frames:
//! `VIDINFER_BENCH_FRAMES` (default 24).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use vidinfer::model::{Image, Model, ModelConfig};
use vidinfer::video::{DecodeOptions, Decoder, Resize, Sampling};

fn frames(video: &Path, n: usize) -> Vec<Image> {
    let mut dec = Decoder::open(
        video,
        DecodeOptions {
            sampling: Sampling::EveryNth(5),
            resize: Resize::default(),
            ..Default::default()
        },
    )
    .expect("open video");
    let mut out = Vec::new();
    while let Some(f) = dec.next_frame().expect("decode") {
        out.push(Image {
            width: f.meta.width,
            height: f.meta.height,
            rgb: f.rgb,
        });
        if out.len() == n {
            break;
        }
    }
    out
}

/// Forward throughput by batch size, best of 3 each, printed as a table. Returns the
/// milliseconds per frame at batch 1.
fn batch_table(model_path: &Path, images: &[Image], threads: usize) -> f64 {
    println!(
        "{:>6} {:>12} {:>10}  ratio vs batch 1",
        "batch", "frames/s", "ms/frame"
    );
    let mut base = None;
    let mut rust_ms_b1 = 0.0;
    for batch in [1usize, 2, 4, 8] {
        let mut cfg = ModelConfig::new(model_path);
        cfg.batch_size = batch;
        cfg.threads = threads;
        let model = Model::load(cfg).expect("load model");
        let best = (0..3)
            .map(|_| {
                let start = Instant::now();
                for chunk in images.chunks(batch) {
                    model.infer_blocking(chunk.to_vec(), false).expect("infer");
                }
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let fps = images.len() as f64 / best;
        let b = *base.get_or_insert(fps);
        let ms = 1000.0 / fps;
        if batch == 1 {
            rust_ms_b1 = ms;
        }
        println!("{batch:>6} {fps:>12.2} {ms:>10.1}  {:.2}x", fps / b);
    }
    rust_ms_b1
}

/// The Python reference (`scripts/torchscript_infer.py`) on the same frames, one at a
/// time, same thread count: its best mean forward milliseconds per frame of 3 runs, or
/// infinity when it cannot run (the reason is printed).
fn python_ms_per_frame(root: &Path, model_path: &Path, images: &[Image], threads: usize) -> f64 {
    let dir = std::env::temp_dir().join(format!("vidinfer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("frames.bin");
    let mut buf = Vec::new();
    for img in images {
        buf.extend_from_slice(&img.width.to_le_bytes());
        buf.extend_from_slice(&img.height.to_le_bytes());
        buf.extend_from_slice(&img.rgb);
    }
    std::fs::write(&bin, buf).unwrap();
    let python = std::env::var_os("VIDINFER_VENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let mut py_best = f64::INFINITY;
    for _ in 0..3 {
        let out = Command::new(&python)
            .arg(root.join("scripts/torchscript_infer.py"))
            .arg(model_path)
            .arg(&bin)
            .args(["--threads", &threads.to_string()])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
                let total: f64 = v.iter().map(|d| d["forward_s"].as_f64().unwrap()).sum();
                py_best = py_best.min(total * 1000.0 / v.len() as f64);
            }
            Ok(o) => {
                println!(
                    "python reference failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                break;
            }
            Err(e) => {
                println!("python reference not run: {e}");
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    py_best
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model_path = std::env::var_os("VIDINFER_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/fixtures/model/model.pt"));
    let video = std::env::var_os("VIDINFER_BENCH_VIDEO")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/fixtures/sample/shapes.mp4"));
    let count = std::env::var("VIDINFER_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let images = frames(&video, count);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "model benchmark: {} on {} frames of {} ({}x{}), {threads} torch threads, best of 3",
        model_path.display(),
        images.len(),
        video.display(),
        images[0].width,
        images[0].height
    );
    let rust_ms_b1 = batch_table(&model_path, &images, threads);
    let py_best = python_ms_per_frame(&root, &model_path, &images, threads);
    if py_best.is_finite() {
        println!(
            "forward parity (batch 1): rust {rust_ms_b1:.1} ms/frame, python {py_best:.1} ms/frame, rust/python = {:.3} (target <= 1.0)",
            rust_ms_b1 / py_best
        );
    }
}
