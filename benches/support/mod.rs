//! Shared by the benchmarks: where generated test videos are cached, and the x264 clips
//! both the decode and the pipeline benchmarks measure (same names, so one cache).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `$VIDINFER_CACHE/bench/`, created on first use.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("VIDINFER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vidinfer"));
    let dir = base.join("bench");
    std::fs::create_dir_all(&dir).expect("create bench cache dir");
    dir
}

/// Run the ffmpeg CLI with `args` writing `out` (through a temp name, so an interrupted
/// run never leaves a half-written clip in the cache).
pub fn ffmpeg(args: &[&str], out: &Path) {
    eprintln!("generating {}", out.display());
    let tmp = out.with_extension("tmp.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&tmp)
        .status()
        .expect("run ffmpeg")
        .success();
    assert!(ok, "ffmpeg failed");
    std::fs::rename(&tmp, out).unwrap();
}

/// A 10 s, 30 fps H.264 clip with x264's default settings (medium preset, 3 B-frames,
/// B-pyramid): the shape of a typical phone or camera upload.
pub fn x264_clip(dir: &Path, width: u32, height: u32) -> PathBuf {
    let path = dir.join(format!("x264-{height}p30-10s.mp4"));
    if !path.exists() {
        let src = format!("testsrc2=size={width}x{height}:rate=30:duration=10");
        ffmpeg(
            &[
                "-f", "lavfi", "-i", &src, "-c:v", "libx264", "-pix_fmt", "yuv420p",
            ],
            &path,
        );
    }
    path
}
