//! Shared test harness: synthetic videos with known content.
//!
//! Every generated frame carries its own index as a row of ten black/white blocks
//! (bit 0 on the left) across the top band, and its lower half is painted a colour
//! that is a function of the index. Blocks and colours are large and flat so that they
//! survive lossy encoding, which lets a test read back which frame a decoded picture
//! really is and compare it with the index the decoder claims.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vidinfer::video::Frame;

pub mod faults;
pub mod moto;

/// Poll `done` every 100 ms until it holds (`true`) or `timeout` passes (`false`).
pub async fn poll_until<F, Fut>(timeout: std::time::Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !done().await {
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    true
}

/// [`poll_until`], failing the test with `what` on the timeout.
pub async fn wait_until<F, Fut>(what: &str, timeout: std::time::Duration, done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        poll_until(timeout, done).await,
        "timed out waiting for {what}"
    );
}

/// Number of index bits drawn into each frame (frames 0..1023 are distinguishable).
pub const CODE_BITS: u32 = 10;

/// The colour painted on the lower half of frame `index`.
pub fn frame_colour(index: u64) -> [u8; 3] {
    let i = index as u32;
    [
        ((i * 53 + 40) % 200 + 30) as u8,
        ((i * 97 + 80) % 200 + 30) as u8,
        ((i * 31 + 160) % 200 + 30) as u8,
    ]
}

/// Where bit `b`'s block sits, as fractions of the frame: (x0, y0, x1, y1).
fn block_rect(b: u32) -> (f64, f64, f64, f64) {
    let x0 = 0.05 + 0.09 * f64::from(b);
    (x0, 0.05, x0 + 0.07, 0.25)
}

/// Render frame `index` as packed RGB24.
pub fn render_frame(index: u64, width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut rgb = vec![128u8; w * h * 3];
    let colour = frame_colour(index);
    for y in h / 2..h {
        for x in 0..w {
            rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&colour);
        }
    }
    for b in 0..CODE_BITS {
        let on = (index >> b) & 1 == 1;
        let v = if on { 255 } else { 0 };
        let (x0, y0, x1, y1) = block_rect(b);
        for y in (y0 * h as f64) as usize..(y1 * h as f64) as usize {
            for x in (x0 * w as f64) as usize..(x1 * w as f64) as usize {
                rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[v, v, v]);
            }
        }
    }
    rgb
}

/// Sample a decoded frame at fractional source coordinates (u, v), undoing a clockwise
/// display rotation so that the same (u, v) names the same painted spot.
fn sample(frame: &Frame, u: f64, v: f64, rotation: u32) -> [u8; 3] {
    let (du, dv) = match rotation {
        90 => (1.0 - v, u),
        180 => (1.0 - u, 1.0 - v),
        270 => (v, 1.0 - u),
        _ => (u, v),
    };
    let x = ((du * f64::from(frame.meta.width)) as u32).min(frame.meta.width - 1);
    let y = ((dv * f64::from(frame.meta.height)) as u32).min(frame.meta.height - 1);
    frame.pixel(x, y)
}

/// Read back the index painted into a decoded frame.
pub fn read_code(frame: &Frame, rotation: u32) -> u64 {
    let mut index = 0;
    for b in 0..CODE_BITS {
        let (x0, y0, x1, y1) = block_rect(b);
        let p = sample(frame, (x0 + x1) / 2.0, (y0 + y1) / 2.0, rotation);
        let luma = (u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3;
        if luma > 128 {
            index |= 1 << b;
        }
    }
    index
}

/// The colour a decoded frame shows in the middle of its lower half.
pub fn read_colour(frame: &Frame, rotation: u32) -> [u8; 3] {
    sample(frame, 0.5, 0.75, rotation)
}

pub fn colour_close(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
}

/// A scratch directory removed when the test ends.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temp dir")
}

/// True when this FFmpeg build has the named encoder.
pub fn has_encoder(name: &str) -> bool {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .expect("ffmpeg must be installed (scripts/setup.sh)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(name))
}

/// How to encode a synthetic video.
#[derive(Clone, Debug)]
pub struct VideoSpec {
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    pub fps: u32,
    /// Output file name; its extension picks the container.
    pub name: String,
    /// Encoder arguments placed after the input (e.g. `-c:v libx264 -crf 18`).
    pub encode: Vec<String>,
}

impl VideoSpec {
    pub fn h264(width: u32, height: u32, frames: u64) -> Self {
        VideoSpec {
            width,
            height,
            frames,
            fps: 25,
            name: "h264.mp4".into(),
            // x264's 3 B-frames with B-pyramid, at a high quality. The synthetic frames
            // change completely from one to the next, which x264 would otherwise code
            // as P-frames only: fix the GOP pattern so non-reference frames exist.
            encode: args(&[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "16",
                "-pix_fmt",
                "yuv420p",
                "-x264-params",
                "bframes=3:b-adapt=0:b-pyramid=normal:scenecut=0",
            ]),
        }
    }

    pub fn with(mut self, name: &str, encode: &[&str]) -> Self {
        self.name = name.into();
        self.encode = args(encode);
        self
    }
}

pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Encode the synthetic frames of `spec` into `dir`, returning the file's path.
pub fn make_video(dir: &Path, spec: &VideoSpec) -> PathBuf {
    let out = dir.join(&spec.name);
    let size = format!("{}x{}", spec.width, spec.height);
    let fps = spec.fps.to_string();
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
    ])
    .args(["-s", &size, "-r", &fps, "-i", "-"])
    .args(&spec.encode)
    .arg(&out)
    .stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ffmpeg");
    {
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..spec.frames {
            stdin
                .write_all(&render_frame(i, spec.width, spec.height))
                .expect("write frame to ffmpeg");
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "ffmpeg failed to encode {spec:?}");
    out
}

/// Run an ffmpeg command line (without the leading `ffmpeg`), asserting success.
pub fn ffmpeg(a: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(a)
        .status()
        .expect("spawn ffmpeg");
    assert!(status.success(), "ffmpeg {a:?} failed");
}

/// The first frame of a video as FFmpeg's command line shows it (rotation metadata
/// applied), as (width, height, packed RGB24).
pub fn ffmpeg_first_frame(path: &Path) -> (u32, u32, Vec<u8>) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-f", "image2pipe", "-c:v", "ppm", "-"])
        .output()
        .expect("spawn ffmpeg");
    assert!(out.status.success());
    let data = out.stdout;
    // "P6\n{w} {h}\n255\n" then pixels.
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while !data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8_lossy(&data[start..pos]).into_owned());
    }
    let (w, h): (u32, u32) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    (w, h, data[pos + 1..].to_vec())
}

/// The repository's root. This harness is shared by the root package's tests, the
/// worker's and gifgen's (manifest directories one level down) and the benchmarks, so
/// the root is found by walking up to `tests/fixtures`.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tests/fixtures").is_dir())
        .expect("the repository root")
        .to_path_buf()
}

/// The committed fixture model.
pub fn fixture_model() -> PathBuf {
    repo().join("tests/fixtures/model/model.pt")
}

/// The bundled sample video; its ground truth is [`SampleTruth::load`].
pub fn sample_video() -> PathBuf {
    repo().join("tests/fixtures/sample/shapes.mp4")
}

/// The venv's python (scripts/setup.sh makes it; scripts/env.sh names it).
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("VIDINFER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/vidinfer/venv")
        });
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh",
        py.display()
    );
    py
}

/// Run one of the repository's Python scripts with the venv's python, returning stdout.
pub fn run_python(args: &[&str]) -> Vec<u8> {
    let out = Command::new(venv_python())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One object of the sample video's ground truth.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TruthObject {
    pub label_id: i64,
    pub label: String,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub mask: vidinfer::schema::Rle,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct TruthFrame {
    pub index: u64,
    pub pts_s: f64,
    pub objects: Vec<TruthObject>,
}

/// scripts/make_sample_video.py's ground truth for every frame of the sample video.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SampleTruth {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub frames: u64,
    pub truth: Vec<TruthFrame>,
}

impl SampleTruth {
    pub fn load() -> SampleTruth {
        let bytes = std::fs::read(repo().join("tests/fixtures/sample/shapes.truth.json")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}

pub fn box_iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

pub fn mask_iou(a: &[u8], b: &[u8]) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (x, y) in a.iter().zip(b) {
        inter += u64::from(*x & *y);
        union += u64::from(*x | *y);
    }
    inter as f64 / union.max(1) as f64
}

/// A plain blocking HTTP/1.1 exchange, one request per connection: (status, body).
/// Enough for the worker's own endpoints; no client library between test and server.
pub fn http_exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let (status, _, body) = http_exchange_head(addr, method, path, headers, body);
    (status, body)
}

/// [`http_exchange`] with the response head too: (status, head, body).
pub fn http_exchange_head(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) before reading the whole body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..text_end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
}

/// The value of one sample in a Prometheus text exposition: the line that starts with
/// `series` (name and labels exactly as exposed) followed by a space.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
