//! Shared by the benchmarks: where generated test videos are cached, the x264 clips
//! both the decode and the pipeline benchmarks measure (same names, so one cache), and
//! how a child process's time and peak memory are measured.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
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

/// A 10-minute, 30 fps 1080p H.264 clip (18,000 frames) for keyframe sampling: x264's
/// ultrafast preset (no B-frames, no scene-cut detection, so a keyframe every 250
/// frames, x264's default GOP) keeps its generation to a few minutes on 2 cores.
pub fn long_clip(dir: &Path) -> PathBuf {
    let path = dir.join("x264-1080p30-10min-ultrafast.mp4");
    if !path.exists() {
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1920x1080:rate=30:duration=600",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ],
            &path,
        );
    }
    path
}

/// A field of `/proc/{pid}/status` (`self` for this process) in KiB: `VmRSS`,
/// `RssAnon`, ...
pub fn status_kib(pid: &str, field: &str) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// What one measured process used.
pub struct Usage {
    /// `ru_maxrss` from `wait4`: peak resident set, shared-library pages included.
    pub peak_kib: i64,
    /// Largest `RssAnon` seen sampling every 20 ms: heap and other private memory,
    /// without the file pages of LibTorch's libraries (which the page cache decides).
    pub anon_kib: i64,
    /// Largest `VmRSS` seen sampling every 20 ms: the child's own resident set, without
    /// the floor `ru_maxrss` inherits from this process's memory map (see [`measure`]).
    pub rss_kib: i64,
    pub seconds: f64,
}

/// Run a command to completion and measure it: its own peak RSS (`ru_maxrss` of
/// `wait4` on that one child, so nothing else on the machine counts) and, sampled, its
/// anonymous memory.
///
/// A child's `ru_maxrss` starts from the memory map it had when it called exec: with
/// `posix_spawn` (std's default, a vfork) that is this process's map, so the child
/// would report this process's own peak. A `pre_exec` hook makes std fork instead,
/// which leaves only the pages a fork copies (about this process's anonymous RSS) as a
/// floor; the caller runs this before any model is loaded to keep that floor low.
pub fn measure(cmd: &mut Command) -> Result<Usage, String> {
    use std::os::unix::process::CommandExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    // SAFETY: the hook does nothing, so it cannot break the async-signal-safety rules
    // that apply between fork and exec.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    let start = Instant::now();
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        let pid = pid.to_string();
        std::thread::spawn(move || {
            let (mut anon, mut rss) = (0, 0);
            while !done.load(Ordering::Relaxed) {
                anon = anon.max(status_kib(&pid, "RssAnon").unwrap_or(0));
                rss = rss.max(status_kib(&pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            (anon, rss)
        })
    };
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for the child we just spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = loop {
        // SAFETY: `status` and `usage` are valid for writes; `pid` is our own child,
        // which `Child` never waits for once we have reaped it here.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            break Err(format!("wait4: {err}"));
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (anon_kib, rss_kib) = sampler.join().unwrap_or((0, 0));
    waited?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("exited with status {status:#x}"));
    }
    Ok(Usage {
        peak_kib: usage.ru_maxrss,
        anon_kib,
        rss_kib,
        seconds,
    })
}

/// A release binary of this workspace (`vidinfer-worker`, `gifgen`) next to the bench's
/// own binary (target/release/deps/..), or under `$CARGO_TARGET_DIR/release`.
pub fn release_binary(name: &str) -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join(name)));
    let from_env =
        std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("release").join(name));
    [beside, from_env]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

/// The bundled sample (320x240 moving shapes the fixture model detects) looped to
/// `seconds` and re-encoded as one x264 stream with x264's default B-frames, so that
/// the 10 s and 100 s videos differ only in length.
pub fn shapes(dir: &Path, seconds: u32) -> PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sample/shapes.mp4");
    let path = dir.join(format!("shapes-{seconds}s.mp4"));
    if mtime(&path) < mtime(&sample) {
        // The sample is 6 s long.
        let loops = (seconds / 6).to_string();
        ffmpeg(
            &[
                "-stream_loop",
                &loops,
                "-i",
                sample.to_str().unwrap(),
                "-t",
                &seconds.to_string(),
                "-an",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
            ],
            &path,
        );
    }
    path
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}
