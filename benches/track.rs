//! Tracker cost: microseconds per sampled frame with 100 detections and ~100 live
//! tracks (100 objects moving through a 1080p frame, 3 classes, jittered boxes), against
//! the 1 ms budget and against Roboflow supervision's ByteTrack
//! (`benches/reference/bytetrack_ref.py`, class-agnostic, ByteTrack's defaults) over
//! the same detections in the same run. Both sides: best of 5 runs, detections built
//! before the clock starts, a fresh tracker per run.
//!
//! Run: `scripts/bench.sh track` (or `cargo bench --bench track` after sourcing
//! scripts/env.sh).

use std::process::Command;
use std::time::Instant;

use vidinfer::track::{Observation, TrackParams, Tracker};

mod support;

const OBJECTS: usize = 100;
const FRAMES: usize = 300;
const FPS: f64 = 30.0;
const RUNS: usize = 5;

/// xorshift64*: a deterministic scene without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// FRAMES frames of OBJECTS boxes bouncing around a 1920x1080 frame.
fn scene() -> Vec<Vec<Observation>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (w, h) = (1920.0, 1080.0);
    let mut objs: Vec<[f64; 6]> = (0..OBJECTS)
        .map(|i| {
            let s = rng.range(30.0, 80.0);
            [
                rng.range(s, w - s),
                rng.range(s, h - s),
                rng.range(-6.0, 6.0),
                rng.range(-6.0, 6.0),
                s,
                (i % 3 + 1) as f64,
            ]
        })
        .collect();
    (0..FRAMES)
        .map(|_| {
            objs.iter_mut()
                .map(|o| {
                    for (p, v, lim) in [(0, 2, w), (1, 3, h)] {
                        o[p] += o[v];
                        if o[p] < o[4] || o[p] > lim - o[4] {
                            o[v] = -o[v];
                        }
                    }
                    let j = |r: &mut Rng| r.range(-1.0, 1.0);
                    let half = o[4] / 2.0;
                    Observation {
                        label_id: o[5] as i64,
                        score: rng.range(0.6, 1.0) as f32,
                        bbox: [
                            (o[0] - half + j(&mut rng)) as f32,
                            (o[1] - half + j(&mut rng)) as f32,
                            (o[0] + half + j(&mut rng)) as f32,
                            (o[1] + half + j(&mut rng)) as f32,
                        ],
                    }
                })
                .collect()
        })
        .collect()
}

fn main() {
    let frames = scene();
    let mut best = f64::INFINITY;
    let (mut tracks, mut live) = (0, 0);
    for _ in 0..RUNS {
        let mut t = Tracker::new(TrackParams::default());
        let start = Instant::now();
        for (i, obs) in frames.iter().enumerate() {
            std::hint::black_box(t.update(i as u64, i as f64 / FPS, obs));
        }
        let took = start.elapsed().as_secs_f64();
        if took < best {
            best = took;
            tracks = t.summaries().len();
            live = t.live();
        }
    }
    let ours = best / FRAMES as f64 * 1e6;

    let seq = support::cache_dir().join("track-sequence.json");
    let json = serde_json::json!({
        "fps": FPS,
        "frames": frames.iter().map(|f| f.iter().map(|o| {
            let b = o.bbox;
            [b[0], b[1], b[2], b[3], o.score, o.label_id as f32]
        }).collect::<Vec<_>>()).collect::<Vec<_>>(),
    });
    std::fs::write(&seq, serde_json::to_vec(&json).unwrap()).unwrap();
    let py = std::env::var("VIDINFER_VENV")
        .map(|v| format!("{v}/bin/python"))
        .unwrap_or_else(|_| "python3".into());
    let out = Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/reference/bytetrack_ref.py"
        ))
        .arg(&seq)
        .arg("--runs")
        .arg(RUNS.to_string())
        .output()
        .expect("run the reference");
    let reference: Option<(f64, u64)> = out
        .status
        .success()
        .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
        .flatten()
        .and_then(|v| Some((v["per_frame_us"].as_f64()?, v["tracks"].as_u64()?)));

    println!("tracker, {OBJECTS} objects x {FRAMES} frames at {FPS} fps (best of {RUNS})");
    println!(
        "  {:<38} {:>10} {:>8} {:>10}",
        "", "us/frame", "tracks", "ratio"
    );
    println!(
        "  {:<38} {:>10.1} {:>8} {:>9.3}x   (of the 1 ms budget; {live} live at the end)",
        "vidinfer::track::Tracker",
        ours,
        tracks,
        ours / 1000.0
    );
    match reference {
        Some((us, n)) => println!(
            "  {:<38} {:>10.1} {:>8} {:>9.1}x   (reference time / vidinfer time)",
            "supervision.ByteTrack (Python)",
            us,
            n,
            us / ours
        ),
        None => println!(
            "  supervision.ByteTrack reference unavailable ({}): install it with \
             scripts/bench.sh",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no output")
        ),
    }
}
