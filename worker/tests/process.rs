//! The `vidinfer-worker sqs` process against a moto server: what happens when a worker
//! is killed mid-job, and when it is asked to stop.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::moto::*;

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

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    format!(
        r#"{{"inputLocation":"s3://{}/in/shapes.mp4","inferenceId":"{id}","params":{{"frameInterval":1}}}}"#,
        res.bucket
    )
}

/// A worker killed with SIGKILL mid-job writes nothing; its message reappears after
/// the visibility timeout and a second worker completes it: exactly one output object
/// and one success notification for the inferenceId.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_request_is_redelivered_and_completed_once() {
    let (moto, sdk, res) = with_sample_video(5).await;
    send(&sdk, &res.queue_url, &message(&res, "killed-once")).await;

    let mut first = spawn_worker(&moto, &res, &["--visibility-timeout", "10"]);
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

    let mut second = spawn_worker(&moto, &res, &["--visibility-timeout", "10"]);
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
    let body = format!(
        r#"{{"inputLocation":"s3://{}/in/shapes.mp4","inferenceId":"logged-1","params":{{"frameInterval":50}}}}"#,
        res.bucket
    );
    send(&sdk, &res.queue_url, &body).await;
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
