//! The `vidinfer-worker sqs` process against a moto server: what happens when a worker
//! is killed mid-job, and when it is asked to stop.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::moto::*;
use common::wait_until;

fn spawn_worker(moto: &Moto, res: &Resources, extra: &[&str]) -> Child {
    let mut args = vec!["--concurrency", "1"];
    args.extend_from_slice(extra);
    spawn_sqs_worker(
        std::path::Path::new(env!("CARGO_BIN_EXE_vidinfer-worker")),
        &moto.env(),
        res,
        &args,
    )
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn message(res: &Resources, id: &str) -> String {
    // Every frame: a job long enough (~150 forward passes) to be interrupted.
    message_every(res, id, 1)
}

/// A request for the sample video, every `interval`th frame.
fn message_every(res: &Resources, id: &str, interval: u32) -> String {
    format!(
        r#"{{"inputLocation":"s3://{}/in/shapes.mp4","inferenceId":"{id}","params":{{"frameInterval":{interval}}}}}"#,
        res.bucket
    )
}

/// Files of ours in a temp dir.
fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vidinfer-"))
        .collect()
}

/// A worker killed with SIGKILL mid-job writes nothing; its message reappears after
/// the visibility timeout and a second worker completes it: exactly one output object
/// and one success notification for the inferenceId. The download the killed worker
/// left in the shared temp dir is removed by the next worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_request_is_redelivered_and_completed_once() {
    let (moto, sdk, res) = with_sample_video(5).await;
    send(&sdk, &res.queue_url, &message(&res, "killed-once")).await;
    let tmp = tempfile::tempdir().unwrap();
    let tmp_dir = tmp.path().to_str().unwrap();
    let args = ["--visibility-timeout", "10", "--tmp-dir", tmp_dir];

    let mut first = spawn_worker(&moto, &res, &args);
    wait_until(
        "the first worker to take the message",
        Duration::from_secs(60),
        || async { depth(&sdk, &res.queue_url).await.1 == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(download(&sdk, &res.bucket, "results/killed-once.out")
        .await
        .is_none());
    assert_eq!(
        temp_files(tmp.path()).len(),
        1,
        "the killed worker's download"
    );

    let mut second = spawn_worker(&moto, &res, &args);
    let notes = notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(120)).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["inferenceId"], "killed-once");
    // No second notification trickles in, and one output object exists.
    assert!(
        notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(3))
            .await
            .is_empty()
    );
    let keys: Vec<String> = list_keys(&sdk, &res.bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with("results/"))
        .collect();
    assert_eq!(keys, vec!["results/killed-once.out".to_string()]);
    assert_eq!(depth(&sdk, &res.queue_url).await, (0, 0));
    assert_eq!(temp_files(tmp.path()), Vec::<String>::new(), "no litter");
    second.kill().unwrap();
    second.wait().unwrap();
}

/// SIGTERM with a job in flight: the worker stops receiving, finishes the job within
/// its drain timeout, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_job_in_flight_then_exits_cleanly() {
    let (moto, sdk, res) = with_sample_video(5).await;
    send(&sdk, &res.queue_url, &message(&res, "drain-me")).await;
    let mut worker = spawn_worker(&moto, &res, &["--drain-timeout", "120"]);
    wait_until(
        "the worker to take the message",
        Duration::from_secs(60),
        || async { depth(&sdk, &res.queue_url).await.1 == 1 },
    )
    .await;
    let ok = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    // A message sent after SIGTERM is not taken.
    send(&sdk, &res.queue_url, &message(&res, "after-term")).await;
    let status =
        wait_exit(&mut worker, Duration::from_secs(120)).expect("the worker exits after draining");
    assert!(status.success(), "exit status {status:?}");
    let notes = notifications(&sdk, &res.success_inbox, 2, Duration::from_secs(3)).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["inferenceId"], "drain-me");
    assert_eq!(
        depth(&sdk, &res.queue_url).await,
        (1, 0),
        "the later message is still queued"
    );
}

/// SIGTERM while the model is still loading (a scale-in right after a scale-out): the
/// worker holds no message yet and exits 0, not by the signal. The model's sidecar is a
/// named pipe, so loading blocks until this test lets it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_exits_cleanly() {
    use std::os::unix::fs::OpenOptionsExt;
    let (moto, _sdk, res) = with_sample_video(5).await;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.pt");
    std::fs::copy(common::fixture_model(), &model).unwrap();
    let fifo = dir.path().join("model.json");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut worker = spawn_worker(&moto, &res, &["--model", model.to_str().unwrap()]);
    // A non-blocking open for writing succeeds once a reader (the loading worker) is
    // there (O_NONBLOCK; ENXIO before).
    let start = std::time::Instant::now();
    let _writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000)
            .open(&fifo)
        {
            Ok(w) => break w,
            Err(_) => {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the worker never started loading"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let ok = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = wait_exit(&mut worker, Duration::from_secs(30)).expect("the worker exits");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// With `--log-format json` every line the worker writes is JSON, and each job ends
/// with one "job finished" line that carries its ids, outcome, counts and timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_ends_with_one_structured_line() {
    let (moto, sdk, res) = with_sample_video(3).await;
    let log = std::env::temp_dir().join(format!("vidinfer-joblog-{}.log", std::process::id()));
    let mut worker = spawn_sqs_worker_logged(
        std::path::Path::new(env!("CARGO_BIN_EXE_vidinfer-worker")),
        &moto.env(),
        &res,
        &["--concurrency", "1", "--log-format", "json"],
        &log,
    );
    send(&sdk, &res.queue_url, &message_every(&res, "logged-1", 50)).await;
    let notes = notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(120)).await;
    assert_eq!(notes.len(), 1);
    // The line is written right after the notification; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = worker.kill();
    let _ = worker.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let done: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "job finished")
        .collect();
    assert_eq!(done.len(), 1, "{text}");
    let (fields, span) = (&done[0]["fields"], &done[0]["span"]);
    assert_eq!(fields["outcome"], "completed");
    assert!(fields["total_s"].as_f64().unwrap() > 0.0);
    assert_eq!(span["inference_id"], "logged-1");
    assert_eq!(span["frames_sampled"], 3);
    assert!(span["input_bytes"].as_u64().unwrap() > 10_000);
    assert!(span["detections"].as_u64().unwrap() > 0);
    assert!(span["infer_s"].as_f64().unwrap() > 0.0);
}

/// The address a worker logged for its metrics endpoint (`--metrics-addr 127.0.0.1:0`,
/// JSON logs).
async fn metrics_addr(log: &std::path::Path) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["fields"]["message"] == "metrics on /metrics")
            .and_then(|l| l["fields"]["addr"].as_str().map(str::to_string));
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no metrics address logged:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One sample of a worker's /metrics.
fn scrape(addr: &str, series: &str) -> f64 {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let (status, body) = common::http_exchange(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body).into_owned();
    common::metric(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// The frames a stored checkpoint holds (0 when there is none yet).
async fn checkpoint_frames(sdk: &aws_config::SdkConfig, bucket: &str, id: &str) -> usize {
    let key = format!("results/.checkpoints/{id}.json");
    match download(sdk, bucket, &key).await {
        Some(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .map(|v| v["frames"].as_array().map_or(0, Vec::len))
            .unwrap_or(0),
        None => 0,
    }
}

/// A long job SIGKILLed at ~70 % resumes from its checkpoint on the next worker: that
/// worker runs at most 35 % of the frames through the model (its own metrics count
/// them), the document is byte-identical to an uninterrupted run's, and the checkpoint
/// is gone afterwards. A checkpoint that is garbage never fails a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_job_resumes_from_its_checkpoint() {
    let (moto, sdk, res) = with_sample_video(5).await;
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_vidinfer-worker"));
    let dir = tempfile::tempdir().unwrap();
    // Every 2nd frame of the 150: 75 forward passes, a job long enough to interrupt.
    let params = ["--frame-interval", "2", "--checkpoint-interval", "0.5"];
    let spawn = |name: &str| {
        let log = dir.path().join(name);
        let mut args = vec!["--concurrency", "1", "--visibility-timeout", "10"];
        args.extend(["--log-format", "json", "--metrics-addr", "127.0.0.1:0"]);
        args.extend(params);
        (
            spawn_sqs_worker_logged(exe, &moto.env(), &res, &args, &log),
            log,
        )
    };
    let body = format!(
        r#"{{"inputLocation":"s3://{}/in/shapes.mp4","inferenceId":"resume-1"}}"#,
        res.bucket
    );
    send(&sdk, &res.queue_url, &body).await;
    let (mut first, _) = spawn("first.log");
    wait_until(
        "a checkpoint with 70 % of the frames",
        Duration::from_secs(180),
        || async { checkpoint_frames(&sdk, &res.bucket, "resume-1").await >= 53 },
    )
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let saved = checkpoint_frames(&sdk, &res.bucket, "resume-1").await;
    assert!((53..75).contains(&saved), "{saved} frames checkpointed");

    let (mut second, log) = spawn("second.log");
    let addr = metrics_addr(&log).await;
    let notes = notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(180)).await;
    assert_eq!(notes.len(), 1);
    let inferred = scrape(&addr, "vidinfer_frames_sampled_total");
    let resumed = scrape(&addr, "vidinfer_frames_resumed_total");
    assert_eq!(inferred + resumed, 75.0);
    assert!(
        inferred <= 0.35 * 75.0,
        "re-inferred {inferred} of 75 frames"
    );
    assert_eq!(resumed, saved as f64);
    let resumed_doc = download(&sdk, &res.bucket, "results/resume-1.out")
        .await
        .expect("output stored");
    // Deleted once the message is settled, which follows the notification.
    wait_until(
        "the checkpoint to be deleted",
        Duration::from_secs(30),
        || async { checkpoint_frames(&sdk, &res.bucket, "resume-1").await == 0 },
    )
    .await;

    // A garbage checkpoint under another request's id: ignored, the job starts over,
    // and it is replaced, then deleted.
    let key = "results/.checkpoints/garbage-1.json";
    upload(&sdk, &res.bucket, key, b"{\"schema\":\"no\"".to_vec()).await;
    send(&sdk, &res.queue_url, &message_every(&res, "garbage-1", 50)).await;
    let notes = notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(120)).await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["inferenceId"], "garbage-1");
    wait_until(
        "the replaced checkpoint to be deleted",
        Duration::from_secs(30),
        || async { download(&sdk, &res.bucket, key).await.is_none() },
    )
    .await;
    let _ = second.kill();
    second.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("checkpoint ignored, starting over"), "{log}");
    assert!(log.contains("resuming from a checkpoint"), "{log}");

    // The uninterrupted run of the same parameters gives the same bytes.
    let whole = whole_run(exe, dir.path(), 2);
    assert!(
        whole == resumed_doc,
        "the resumed document differs from the uninterrupted one"
    );
}

/// The document `vidinfer-worker run` gives for the whole sample video, every
/// `interval`th frame: what a request must give however it was interrupted or split.
fn whole_run(exe: &std::path::Path, dir: &std::path::Path, interval: u32) -> Vec<u8> {
    let out = dir.join("whole.json");
    let status = Command::new(exe)
        .args(["run", "--model", common::fixture_model().to_str().unwrap()])
        .arg(common::sample_video())
        .args(["--frame-interval", &interval.to_string(), "-o"])
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(&out).unwrap()
}

/// Keys under a split request's `.parts/` directory.
async fn part_keys(sdk: &aws_config::SdkConfig, bucket: &str, id: &str) -> Vec<String> {
    let dir = format!("results/.parts/{id}/");
    list_keys(sdk, bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&dir))
        .collect()
}

/// One video across two worker processes, one of them SIGKILLed once the first part
/// is stored (while it works on the next segment): the segment it held comes back after
/// the visibility timeout, and the request completes once, with the bytes of an
/// uninterrupted single run; no part is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_segment_loses_nothing() {
    let (moto, sdk, res) = with_sample_video(5).await;
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_vidinfer-worker"));
    let dir = tempfile::tempdir().unwrap();
    let spawn = |name: &str| {
        let mut args = vec!["--concurrency", "1", "--visibility-timeout", "10"];
        args.extend(["--log-format", "json", "--metrics-addr", "off"]);
        args.extend(["--frame-interval", "2", "--segment-seconds", "1"]);
        let log = dir.path().join(name);
        spawn_sqs_worker_logged(exe, &moto.env(), &res, &args, &log)
    };
    let mut doomed = spawn("doomed.log");
    let mut other = spawn("other.log");
    let body = format!(
        r#"{{"inputLocation":"s3://{}/in/shapes.mp4","inferenceId":"fleet-1"}}"#,
        res.bucket
    );
    send(&sdk, &res.queue_url, &body).await;
    let logs = dir.path().to_path_buf();
    let _dump = scopeguard(move || {
        for name in ["doomed.log", "other.log"] {
            let text = std::fs::read_to_string(logs.join(name)).unwrap_or_default();
            eprintln!("--- {name}\n{text}");
        }
    });
    // Once a part is stored, and while the doomed worker computes a segment (it has
    // started one more than it finished).
    let doomed_log = dir.path().join("doomed.log");
    let busy = || {
        let log = std::fs::read_to_string(&doomed_log).unwrap_or_default();
        let started = log.matches("computing a segment").count();
        let finished = log
            .lines()
            .filter(|l| l.contains("job finished") && l.contains("\"segment\""))
            .count();
        started > finished
    };
    wait_until(
        "a part, and a segment in flight",
        Duration::from_secs(120),
        || async {
            busy()
                && part_keys(&sdk, &res.bucket, "fleet-1")
                    .await
                    .iter()
                    .any(|k| k.contains("/part-"))
        },
    )
    .await;
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();

    let mut notes = notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(180)).await;
    notes.extend(notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(8)).await);
    assert_eq!(notes.len(), 1, "one notification: {notes:#?}");
    let split = download(&sdk, &res.bucket, "results/fleet-1.out")
        .await
        .expect("output stored");
    wait_until(
        "the parts to be removed",
        Duration::from_secs(30),
        || async { part_keys(&sdk, &res.bucket, "fleet-1").await.is_empty() },
    )
    .await;
    assert_eq!(depth(&sdk, &res.queue_url).await, (0, 0));
    assert_eq!(depth(&sdk, &res.dlq_url).await, (0, 0));
    let _ = other.kill();
    other.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("other.log")).unwrap();
    assert!(log.contains("parts assembled"), "{log}");

    assert!(
        whole_run(exe, dir.path(), 2) == split,
        "the split document differs from the uninterrupted one"
    );
}

/// Runs `f` when dropped during a panic: the logs of a failed test.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                if let Some(f) = self.0.take() {
                    f()
                }
            }
        }
    }
    Guard(Some(f))
}
