//! The hostile-input corpus (`scripts/hostile_corpus.py`: empty, noise, truncated and
//! corrupted files, audio-only, stills, text, huge declared sizes, absurd frame rates
//! and timestamps, playlists and concat scripts naming local files and loopback URLs,
//! malformed and oversized messages) through all three front doors: each case ends in
//! its documented outcome — `run`'s exit status and message, `serve`'s HTTP status,
//! `sqs`'s notification (message deleted, worker alive).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::moto::*;
use common::*;

#[derive(serde::Deserialize)]
struct Media {
    name: String,
    file: PathBuf,
    expect: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Message {
    name: String,
    body: String,
    reason: String,
}

#[derive(serde::Deserialize)]
struct Manifest {
    media: Vec<Media>,
    messages: Vec<Message>,
}

fn corpus(dir: &Path, loopback_port: u16) -> Manifest {
    let script = repo().join("scripts/hostile_corpus.py");
    let out = Command::new(venv_python())
        .arg(&script)
        .arg(dir)
        .args(["--loopback-port", &loopback_port.to_string()])
        .output()
        .expect("run the corpus script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(m.media.len() + m.messages.len() >= 20);
    m
}

/// What a failure of each class says (the error's own words, in every front door).
fn phrase(class: &str) -> &'static [&'static str] {
    match class {
        "empty" => &["is empty"],
        "unrecognized" => &["not a video container"],
        "no-video" => &["no video stream"],
        "too-large" => &["limit", "budget"],
        "damaged" => &["damaged", "no decodable frames"],
        other => panic!("unknown class {other}"),
    }
}

fn status(class: &str) -> u16 {
    match class {
        "ok" => 200,
        "empty" | "damaged" => 400,
        "unrecognized" | "no-video" => 415,
        "too-large" => 413,
        other => panic!("unknown class {other}"),
    }
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vidinfer-worker"))
}

/// A loopback port with a listener that counts connections: no case may reach it.
fn tripwire() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            if c.is_ok() {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    (port, hits)
}

#[test]
fn every_case_gets_its_documented_failure_from_run() {
    let dir = scratch();
    let (port, hits) = tripwire();
    let m = corpus(dir.path(), port);
    for case in &m.media {
        let out = Command::new(exe())
            .arg("run")
            .arg(&case.file)
            .args(["--model", fixture_model().to_str().unwrap()])
            .args(["--frame-interval", "5", "--output", "/dev/null"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        let matched = case.expect.iter().any(|class| match class.as_str() {
            "ok" => code == Some(0),
            c => code == Some(1) && phrase(c).iter().any(|p| stderr.contains(p)),
        });
        assert!(
            matched,
            "{}: expected one of {:?}, got exit {code:?}: {stderr}",
            case.name, case.expect
        );
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

fn wait_ping(addr: SocketAddr, child: &mut Child) {
    let start = Instant::now();
    loop {
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        if std::net::TcpStream::connect(addr).is_ok()
            && http_exchange(addr, "GET", "/ping", &[], b"").0 == 200
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "serve never became ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_case_gets_its_documented_status_from_serve() {
    let dir = scratch();
    let (port, hits) = tripwire();
    let m = corpus(dir.path(), port);
    let listen = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut child = Command::new(exe())
        .arg("serve")
        .args(["--listen", &listen.to_string()])
        .args(["--model", fixture_model().to_str().unwrap()])
        .args(["--frame-interval", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ping(listen, &mut child);
    for case in &m.media {
        let body = std::fs::read(&case.file).unwrap();
        let (code, reply) = http_exchange(
            listen,
            "POST",
            "/invocations",
            &[("Content-Type", "application/octet-stream")],
            &body,
        );
        let allowed: Vec<u16> = case.expect.iter().map(|c| status(c)).collect();
        assert!(
            allowed.contains(&code),
            "{}: expected {allowed:?}, got {code}: {:.300}",
            case.name,
            String::from_utf8_lossy(&reply)
        );
        if code != 200 {
            let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
            let message = v["message"].as_str().unwrap();
            let class = case.expect.iter().find(|c| status(c) == code).unwrap();
            assert!(
                phrase(class).iter().any(|p| message.contains(p)),
                "{}: {message}",
                case.name
            );
        }
    }
    // Oversized and malformed custom attributes, the header's share of the message cases.
    let video = std::fs::read(sample_video()).unwrap();
    for (attrs, needle) in [
        (format!("a={}", "1".repeat(2000)), "customAttributes"),
        ("frame_interval=-3".to_string(), "frame_interval"),
        ("masks=perhaps".to_string(), "masks"),
    ] {
        let (code, reply) = http_exchange(
            listen,
            "POST",
            "/invocations",
            &[
                ("Content-Type", "video/mp4"),
                ("X-Amzn-SageMaker-Custom-Attributes", &attrs),
            ],
            &video,
        );
        let text: String = String::from_utf8_lossy(&reply).chars().take(300).collect();
        assert_eq!(code, 400, "{attrs:.40}: {text}");
        assert!(text.contains(needle), "{attrs:.40}: {text}");
    }
    assert_eq!(http_exchange(listen, "GET", "/ping", &[], b"").0, 200);
    assert!(child.try_wait().unwrap().is_none(), "serve is still up");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_gets_its_documented_notification_from_sqs() {
    let dir = scratch();
    let (port, hits) = tripwire();
    let m = corpus(dir.path(), port);
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let res = Resources::create(&sdk, 3).await;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, case) in m.media.iter().enumerate() {
        let key = format!("in/{i:02}-{}", case.name.replace('%', "pct"));
        upload(&sdk, &res.bucket, &key, std::fs::read(&case.file).unwrap()).await;
        let id = format!("media-{i:02}");
        let body = serde_json::json!({
            "inputLocation": format!("s3://{}/{key}", res.bucket),
            "inferenceId": id,
            "params": {"frameInterval": 5},
        });
        send(&sdk, &res.queue_url, &body.to_string()).await;
        expected.insert(id, case.expect.clone());
    }
    for msg in &m.messages {
        send(&sdk, &res.queue_url, &msg.body).await;
    }
    let mut worker = spawn_sqs_worker(exe(), &moto.env(), &res, &["--concurrency", "2"]);
    let total = m.media.len() + m.messages.len();
    let deadline = Duration::from_secs(240);
    let start = Instant::now();
    let mut notes = Vec::new();
    while notes.len() < total && start.elapsed() < deadline {
        for inbox in [&res.success_inbox, &res.error_inbox] {
            notes.extend(notifications(&sdk, inbox, 1, Duration::from_secs(1)).await);
        }
        assert!(worker.try_wait().unwrap().is_none(), "the worker died");
    }
    assert_eq!(notes.len(), total, "one notification per case: {notes:#?}");
    for (id, classes) in &expected {
        let n = notes
            .iter()
            .find(|n| n["inferenceId"] == id.as_str())
            .unwrap_or_else(|| panic!("no notification for {id}"));
        let ok = classes.iter().any(|c| match c.as_str() {
            "ok" => n["invocationStatus"] == "Completed",
            c => {
                n["invocationStatus"] == "Failed"
                    && phrase(c)
                        .iter()
                        .any(|p| n["failureReason"].as_str().unwrap().contains(p))
            }
        });
        assert!(ok, "{id}: expected one of {classes:?}, got {n:#}");
    }
    let failures: Vec<&str> = notes
        .iter()
        .filter(|n| !n["inferenceId"].as_str().unwrap().starts_with("media-"))
        .map(|n| n["failureReason"].as_str().unwrap())
        .collect();
    for msg in &m.messages {
        assert!(
            failures.iter().any(|f| f.contains(&msg.reason)),
            "{}: no failure mentions `{}`: {failures:#?}",
            msg.name,
            msg.reason
        );
    }
    // Every message was deleted (none left, none in flight, none dead-lettered), and the
    // worker is still taking work.
    assert_eq!(depth(&sdk, &res.queue_url).await, (0, 0));
    assert_eq!(depth(&sdk, &res.dlq_url).await, (0, 0));
    assert!(worker.try_wait().unwrap().is_none(), "the worker is alive");
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// `run --format legacy` writes the legacy array in the old system's coordinates (each
/// frame stretched to 1024x1024) unless a resize is chosen: the same bytes as an
/// explicit `--resize stretch`, and boxes beyond the 320x240 video's own width.
#[test]
fn run_writes_legacy_boxes_in_the_stretched_frame_by_default() {
    let dir = scratch();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let status = Command::new(exe())
            .arg("run")
            .arg(sample_video())
            .args(["--model", fixture_model().to_str().unwrap()])
            .args(["--frame-interval", "50", "--format", "legacy", "--output"])
            .arg(&out)
            .args(extra)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{name}");
        let bytes = std::fs::read(&out).unwrap();
        let frames: Vec<vidinfer::schema::LegacyFrame> = serde_json::from_slice(&bytes).unwrap();
        let max_x = frames
            .iter()
            .flat_map(|f| &f.boxes)
            .map(|b| b[2])
            .fold(0.0f32, f32::max);
        (bytes, max_x)
    };
    let (default, default_x) = run("default.json", &[]);
    let (stretch, _) = run("stretch.json", &["--resize", "stretch"]);
    let (_, fit_x) = run("fit.json", &["--resize", "fit"]);
    assert_eq!(default, stretch);
    assert!(default_x > 330.0, "{default_x}");
    assert!(fit_x <= 320.5, "{fit_x}");
}

/// `run`'s command-line conventions: `-o -` is stdout, `--pretty` keeps the document's
/// order, the summary counts what was written, usage mistakes exit 2 before the model
/// loads, JSON logs are JSON only, and log files carry no colour codes.
#[test]
fn run_follows_the_command_line_conventions() {
    let dir = scratch();
    let model = fixture_model();
    let model = model.to_str().unwrap();
    let video = sample_video();
    let run = |args: &[&str]| {
        Command::new(exe())
            .current_dir(dir.path())
            .arg("run")
            .args(args)
            .output()
            .unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    // `-o -` writes stdout (no file named `-`); --pretty keeps the document's order;
    // the summary counts the detections written (after --min-score).
    let v = video.to_str().unwrap();
    let out = run(&[
        "--model",
        model,
        v,
        "--frame-interval",
        "25",
        "--min-score",
        "0.5",
        "--pretty",
        "-o",
        "-",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.path().join("-").exists());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: usize = doc["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["detections"].as_array().unwrap().len())
        .sum();
    let stdout = text(&out.stdout);
    // The top-level keys: the lines indented by exactly two spaces.
    let top: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  \""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(top[..5], ["schema", "video", "model", "params", "frames"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("| {written} detections |")),
        "{stderr}"
    );
    // Redirected stderr: no colour codes, no LibTorch line outside the log.
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    assert!(!stderr.contains("RCNN always returns"), "{stderr}");

    // Usage mistakes: exit 2 before the model loads (the model path is bogus too, and
    // it is never the error).
    for (args, expect) in [
        (vec!["/no/such/video.mp4"], "no such file"),
        (vec!["/tmp"], "is a directory"),
        (vec![v, "-o", "/no/such/dir/out.json"], "cannot write there"),
        (
            vec![v, "--frame-interval", "0"],
            "frame_interval must be at least 1",
        ),
    ] {
        let mut all = vec!["--model", "/no/such/model.pt"];
        all.extend(args);
        let out = run(&all);
        let e = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {e}");
        assert!(e.contains(expect) && !e.contains("model"), "{all:?}: {e}");
    }

    // A file that is not TorchScript: one line that says how to export one.
    let readme = repo().join("README.md");
    let out = run(&["--model", readme.to_str().unwrap(), v]);
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert_eq!(
        e.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{e}"
    );
    assert!(e.contains("scripts/export_model.py"), "{e}");

    // JSON logs: every stderr line is a JSON object; the job's line has its fields.
    let out = Command::new(exe())
        .current_dir(dir.path())
        .args(["--log-format", "json", "run", "--model", model, v])
        .args(["--frame-interval", "10", "-o", "out.json"])
        // Progress lines at every batch (30 s by default) since stderr is no terminal.
        .env("VIDINFER_PROGRESS_S", "0.001")
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let done = lines
        .iter()
        .find(|l| l["fields"]["message"] == "job finished")
        .expect("a job line");
    assert_eq!(done["fields"]["frames_sampled"], 15);
    let progress: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "progress")
        .collect();
    assert!(!progress.is_empty(), "no progress lines");
    assert!(progress
        .iter()
        .all(|p| p["fields"]["frames_done"].as_u64().unwrap() <= 15));
    assert!(done["fields"]["detections"].as_u64().unwrap() > 0);
    assert!(done["fields"]["total_s"].as_f64().unwrap() > 0.0);
}

/// Options from the environment: `VIDINFER_<FLAG>`, the legacy and earlier names when
/// that is unset, and a typed flag beats any of them (a deployment's FRAME_INTERVAL
/// never makes a typed --fps an error).
#[test]
fn run_reads_the_environment_and_typed_flags_win() {
    let model = fixture_model();
    let model = model.to_str().unwrap();
    let video = sample_video();
    let v = video.to_str().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        Command::new(exe())
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let frames = |out: &std::process::Output| -> (bool, usize) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        match doc.as_array() {
            Some(legacy) => (true, legacy.len()),
            None => (false, doc["frames"].as_array().unwrap().len()),
        }
    };
    // 150 frames at 25 fps (6 s): every 50th is 3 frames, every 25th 6, 2 fps 12.
    let legacy_env = [
        ("FRAME_INTERVAL", "50"),
        ("VIDINFER_OUTPUT_FORMAT", "legacy"),
    ];
    assert_eq!(frames(&run(&legacy_env, &["--model", model, v])), (true, 3));
    let both = [("FRAME_INTERVAL", "50"), ("VIDINFER_FRAME_INTERVAL", "25")];
    assert_eq!(frames(&run(&both, &["--model", model, v])), (false, 6));
    let typed_fps = run(
        &[("FRAME_INTERVAL", "50")],
        &["--model", model, v, "--fps", "2"],
    );
    assert_eq!(frames(&typed_fps), (false, 12));
    let typed_interval = run(
        &[("VIDINFER_FPS", "2")],
        &["--model", model, v, "--frame-interval", "25"],
    );
    assert_eq!(frames(&typed_interval), (false, 6));
    // The same between --keyframes and the others (the sample video's one keyframe is
    // its first frame).
    let typed_keyframes = run(
        &[("FRAME_INTERVAL", "50")],
        &["--model", model, v, "--keyframes"],
    );
    assert_eq!(frames(&typed_keyframes), (false, 1));
    let typed_over_keyframes = run(
        &[("VIDINFER_KEYFRAMES", "true")],
        &["--model", model, v, "--frame-interval", "25"],
    );
    assert_eq!(frames(&typed_over_keyframes), (false, 6));

    // Both typed, or both in the environment: a usage error before the model loads.
    let bogus = ["--model", "/no/such/model.pt", v];
    for (env, extra, expect) in [
        (
            vec![],
            vec!["--fps", "2", "--frame-interval", "5"],
            "both given",
        ),
        (
            vec![("VIDINFER_SAMPLE_FPS", "2"), ("FRAME_INTERVAL", "5")],
            vec![],
            "the environment sets both",
        ),
        (vec![], vec!["--keyframes", "--fps", "2"], "both given"),
        (
            vec![("VIDINFER_KEYFRAMES", "1"), ("FRAME_INTERVAL", "5")],
            vec![],
            "the environment sets both",
        ),
    ] {
        let args: Vec<&str> = bogus.iter().copied().chain(extra).collect();
        let out = run(&env, &args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {e}");
        assert!(e.contains(expect) && !e.contains("model"), "{e}");
    }
}

/// `--start`/`--end`: the frames of a full run in that span, with the same indices,
/// times and detections (tracks are the span's own: ids restart with it), the range in
/// the document's params; a start past the video's end is a usage error before the
/// model loads.
#[test]
fn run_with_a_time_range_gives_the_full_runs_frames_in_it() {
    let model = fixture_model();
    let video = sample_video();
    let run = |extra: &[&str]| {
        let out = Command::new(exe())
            .arg("run")
            .args(["--model", model.to_str().unwrap()])
            .arg(&video)
            .args(["--frame-interval", "10", "-o", "-"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let without_tracks = |frame: &serde_json::Value| {
        let mut f = frame.clone();
        for d in f["detections"].as_array_mut().unwrap() {
            d.as_object_mut().unwrap().remove("track_id");
        }
        f
    };
    let full = run(&[]);
    let part = run(&["--start", "2", "--end", "4.5"]);
    assert_eq!(part["params"]["range"]["start_s"], 2.0);
    assert_eq!(part["params"]["range"]["end_s"], 4.5);
    let want: Vec<serde_json::Value> = full["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| (2.0..4.5).contains(&f["pts_s"].as_f64().unwrap()))
        .map(without_tracks)
        .collect();
    let got: Vec<serde_json::Value> = part["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(without_tracks)
        .collect();
    assert_eq!(want.len(), 7);
    assert_eq!(got, want);

    let out = Command::new(exe())
        .args(["run", "--model", "/no/such/model.pt"])
        .arg(&video)
        .args(["--start", "9"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(
        e.contains("after the end of the video") && !e.contains("model"),
        "{e}"
    );
}
