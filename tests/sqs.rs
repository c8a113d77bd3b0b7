//! The queue worker against a real moto server (S3, SQS, SNS over the wire) with the
//! real engine and fixture model.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::moto::*;
use common::*;
use tokio_util::sync::CancellationToken;
use vidinfer::metrics::{Door, Metrics, Outcome};
use vidinfer::model::{Model, ModelConfig};
use vidinfer::notify::Notifier;
use vidinfer::params::Params;
use vidinfer::pipeline::Engine;
use vidinfer::request::InputPolicy;
use vidinfer::schema::Predictions;
use vidinfer::sqs::{SqsConfig, SqsWorker};
use vidinfer::video::{Resize, Sampling};

fn model() -> Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL
        .get_or_init(|| Model::load(ModelConfig::new(fixture_model())).expect("fixture model"))
        .clone()
}

fn config(res: &Resources, output_bucket: &str) -> SqsConfig {
    SqsConfig {
        queue_url: res.queue_url.clone(),
        output_path: format!("s3://{output_bucket}/results").parse().unwrap(),
        failure_path: format!("s3://{}/failures/", res.bucket).parse().unwrap(),
        endpoint_name: "vidinfer-test".into(),
        region: "us-east-1".into(),
        concurrency: 2,
        visibility_timeout_s: 30,
        heartbeat_every: Duration::from_secs(10),
        wait_time_s: 1,
        max_input_bytes: 50 * 1024 * 1024,
        drain_timeout: Duration::from_secs(30),
        include_response_body: false,
        retry_backoff_s: 1,
        step_attempts: 2,
        temp_dir: std::env::temp_dir(),
        defaults: Params {
            sampling: Sampling::EveryNth(10),
            resize: Resize::default(),
            min_score: Some(0.5),
            ..Params::default()
        },
        allowed_inputs: Default::default(),
        checkpoint_every: None,
        segment_seconds: 0.0,
    }
}

/// Start a worker in this process; returns its shutdown token, metrics and task.
async fn start_worker(
    sdk: &aws_config::SdkConfig,
    res: &Resources,
    config: SqsConfig,
) -> (CancellationToken, Arc<Metrics>, tokio::task::JoinHandle<()>) {
    let metrics = Arc::new(Metrics::new(Door::Queue));
    let notifier = Notifier::new(
        sdk,
        Some(res.success_topic.clone()),
        Some(res.error_topic.clone()),
    );
    let worker = Arc::new(SqsWorker::new(
        Engine::new(model()),
        sdk,
        notifier,
        config,
        metrics.clone(),
    ));
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    (stop, metrics, task)
}

/// Same keys, recursively, with the same JSON types (fields that are optional in
/// SageMaker's notification are listed in `optional`).
fn same_shape(
    reference: &serde_json::Value,
    ours: &serde_json::Value,
    path: &str,
    optional: &[&str],
) {
    use serde_json::Value;
    match (reference, ours) {
        (Value::Object(r), Value::Object(o)) => {
            for (k, rv) in r {
                let p = format!("{path}.{k}");
                match o.get(k) {
                    Some(ov) => same_shape(rv, ov, &p, optional),
                    None => assert!(optional.contains(&p.as_str()), "missing field {p}"),
                }
            }
            for k in o.keys() {
                let p = format!("{path}.{k}");
                assert!(
                    r.contains_key(k) || optional.contains(&p.as_str()),
                    "unexpected field {p}"
                );
            }
        }
        (r, o) => assert_eq!(
            std::mem::discriminant(r),
            std::mem::discriminant(o),
            "{path}: {r} vs {o}"
        ),
    }
}

fn is_sagemaker_timestamp(s: &str) -> bool {
    // 2022-01-25T22:46:00.608Z
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

fn fixture(name: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(repo().join("tests/fixtures/sagemaker").join(name)).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_processed_stored_notified_and_deleted() {
    let (_moto, sdk, res) = with_sample_video(3).await;
    let (stop, metrics, task) = start_worker(&sdk, &res, config(&res, &res.bucket)).await;
    let body = format!(
        r#"{{"inputLocation":"s3://{}/in/shapes.mp4","inferenceId":"shapes-1","contentType":"video/mp4","accept":"application/json","customAttributes":"frame_interval=15;team=cv"}}"#,
        res.bucket
    );
    send(&sdk, &res.queue_url, &body).await;
    let notes = notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(90)).await;
    assert_eq!(notes.len(), 1, "one success notification");
    let n = &notes[0];

    // Field by field against SageMaker's documented notification.
    same_shape(
        &fixture("success.json"),
        n,
        "",
        &[
            ".requestParameters.accept",
            ".requestParameters.customAttributes",
            ".responseBody",
        ],
    );
    assert_eq!(n["invocationStatus"], "Completed");
    assert_eq!(n["eventSource"], "aws:sagemaker");
    assert_eq!(n["eventName"], "InferenceResult");
    assert_eq!(n["eventVersion"], "1.0");
    assert_eq!(n["awsRegion"], "us-east-1");
    assert_eq!(n["inferenceId"], "shapes-1");
    assert_eq!(n["requestParameters"]["endpointName"], "vidinfer-test");
    assert_eq!(
        n["requestParameters"]["inputLocation"],
        format!("s3://{}/in/shapes.mp4", res.bucket)
    );
    assert_eq!(n["requestParameters"]["contentType"], "video/mp4");
    assert_eq!(n["requestParameters"]["accept"], "application/json");
    assert_eq!(
        n["requestParameters"]["customAttributes"],
        "frame_interval=15;team=cv"
    );
    assert_eq!(n["responseParameters"]["contentType"], "application/json");
    let out = format!("s3://{}/results/shapes-1.out", res.bucket);
    assert_eq!(n["responseParameters"]["outputLocation"], out);
    let (received, event) = (
        n["receivedTime"].as_str().unwrap(),
        n["eventTime"].as_str().unwrap(),
    );
    assert!(
        is_sagemaker_timestamp(received) && is_sagemaker_timestamp(event),
        "{received} {event}"
    );
    assert!(received <= event);

    // The output is the v2 document with the request's sampling override applied.
    let doc = download(&sdk, &res.bucket, "results/shapes-1.out")
        .await
        .expect("output stored");
    let Predictions::V2(doc) = Predictions::parse(&doc).unwrap() else {
        panic!("v2 expected")
    };
    let idx: Vec<u64> = doc.frames.iter().map(|f| f.index).collect();
    assert_eq!(idx, (0..150).step_by(15).collect::<Vec<_>>());
    assert!(doc.frames.iter().all(|f| f.detections.len() >= 3));

    // Deleted only after: nothing visible or in flight; nothing in the DLQ or error inbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(depth(&sdk, &res.queue_url).await, (0, 0));
    assert_eq!(depth(&sdk, &res.dlq_url).await, (0, 0));
    assert!(
        notifications(&sdk, &res.error_inbox, 1, Duration::from_secs(1))
            .await
            .is_empty()
    );
    assert_eq!(metrics.jobs(Outcome::Completed), 1);
    let text = metrics.render();
    let metric = |series: &str| common::metric(&text, series).unwrap_or(-1.0);
    assert_eq!(metric("vidinfer_jobs_total{outcome=\"completed\"}"), 1.0);
    assert_eq!(metric("vidinfer_jobs_total{outcome=\"failed\"}"), 0.0);
    assert_eq!(
        metric("vidinfer_job_duration_seconds_count{outcome=\"completed\"}"),
        1.0
    );
    assert_eq!(metric("vidinfer_frames_sampled_total"), idx.len() as f64);
    // At least this job's pictures (the tests share one model and its batches).
    assert!(metric("vidinfer_batch_size_sum") >= idx.len() as f64);
    for stage in ["download", "decode", "infer", "upload", "notify"] {
        let series = format!("vidinfer_stage_duration_seconds_count{{stage=\"{stage}\"}}");
        assert!(metric(&series) >= 1.0, "{series}: {text}");
    }
    assert_eq!(metric("vidinfer_jobs_in_flight"), 0.0);
    assert!(metric("vidinfer_queue_wait_seconds_count") >= 1.0);
    assert!(!text.contains("vidinfer_http_requests_total"));
    stop.cancel();
    task.await.unwrap();
}

/// A legacy request with no resize gets the old system's coordinates (frames stretched
/// to 1024x1024), whether it asks through `params` or custom attributes: the same bytes
/// as an explicit `resize=stretch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_requests_get_the_stretched_frame_unless_they_choose() {
    let (_moto, sdk, res) = with_sample_video(3).await;
    let (stop, _metrics, task) = start_worker(&sdk, &res, config(&res, &res.bucket)).await;
    let input = format!("s3://{}/in/shapes.mp4", res.bucket);
    for (id, how) in [
        (
            "by-params",
            r#""params":{"format":"legacy","frameInterval":50}"#,
        ),
        (
            "explicit",
            r#""customAttributes":"format=legacy;frame_interval=50;resize=stretch""#,
        ),
    ] {
        let body = format!(r#"{{"inputLocation":"{input}","inferenceId":"{id}",{how}}}"#);
        send(&sdk, &res.queue_url, &body).await;
    }
    let notes = notifications(&sdk, &res.success_inbox, 2, Duration::from_secs(90)).await;
    assert_eq!(notes.len(), 2);
    let by_params = download(&sdk, &res.bucket, "results/by-params.out")
        .await
        .expect("output stored");
    let explicit = download(&sdk, &res.bucket, "results/explicit.out")
        .await
        .expect("output stored");
    assert_eq!(by_params, explicit);
    let Predictions::Legacy(frames) = Predictions::parse(&by_params).unwrap() else {
        panic!("legacy expected")
    };
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().flat_map(|f| &f.boxes).any(|b| b[2] > 330.0));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_fail_with_a_reason_and_the_worker_carries_on() {
    let (_moto, sdk, res) = with_sample_video(3).await;
    let b = &res.bucket;
    upload(
        &sdk,
        b,
        "in/notes.mp4",
        b"these are not video bytes".to_vec(),
    )
    .await;
    let cases: Vec<(String, &str, &str)> = vec![
        ("this is not json".into(), "", "not a JSON request"),
        (
            r#"{"inferenceId":"no-input"}"#.into(),
            "no-input",
            "no inputLocation",
        ),
        (
            format!(r#"{{"inputLocation":"s3://{b}/in/missing.mp4","inferenceId":"missing"}}"#),
            "missing",
            "does not exist",
        ),
        (
            format!(r#"{{"inputLocation":"s3://{b}/in/notes.mp4","inferenceId":"notvideo"}}"#),
            "notvideo",
            "not a video container",
        ),
        (
            format!(
                r#"{{"inputLocation":"s3://{b}/in/shapes.mp4","inferenceId":"badparams","params":{{"frameInterval":0}}}}"#
            ),
            "badparams",
            "frame_interval must be at least 1",
        ),
        (
            format!(
                r#"{{"inputLocation":"s3://{b}/in/shapes.mp4","inferenceId":"expired","requestTTLSeconds":1}}"#
            ),
            "expired",
            "ExpiredRequest",
        ),
        (
            format!(r#"{{"inputLocation":"s3://{b}/in/shapes.mp4","inferenceId":"../escape"}}"#),
            "",
            "inferenceId",
        ),
        // The worker may read only s3://{b}/in/ (set below): refused before any download.
        (
            format!(r#"{{"inputLocation":"s3://{b}/failures/x.mp4","inferenceId":"outside"}}"#),
            "outside",
            "outside the locations this worker may read",
        ),
    ];
    for (body, _, _) in &cases {
        send(&sdk, &res.queue_url, body).await;
    }
    // Let the TTL of 1 s pass before the worker sees the messages.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut cfg = config(&res, b);
    cfg.allowed_inputs = InputPolicy::new(vec![format!("s3://{b}/in").parse().unwrap()]);
    let (stop, metrics, task) = start_worker(&sdk, &res, cfg).await;
    let notes = notifications(&sdk, &res.error_inbox, cases.len(), Duration::from_secs(90)).await;
    assert_eq!(
        notes.len(),
        cases.len(),
        "one failure notification per bad request: {notes:#?}"
    );
    for (_, id, reason) in &cases {
        let n = notes
            .iter()
            .find(|n| n["failureReason"].as_str().unwrap().contains(reason))
            .unwrap_or_else(|| panic!("no failure mentions `{reason}`: {notes:#?}"));
        same_shape(&fixture("failure.json"), n, "", &[]);
        assert_eq!(n["invocationStatus"], "Failed");
        if !id.is_empty() {
            assert_eq!(n["inferenceId"], *id);
        }
        let location = n["responseParameters"]["failureLocation"].as_str().unwrap();
        let inference_id = n["inferenceId"].as_str().unwrap();
        assert_eq!(
            location,
            format!("s3://{b}/failures/{inference_id}-error.out")
        );
        let key = location.strip_prefix(&format!("s3://{b}/")).unwrap();
        let stored: serde_json::Value =
            serde_json::from_slice(&download(&sdk, b, key).await.expect("failure object stored"))
                .unwrap();
        assert_eq!(stored["failureReason"], n["failureReason"]);
    }
    // No key escaped the failure prefix.
    for key in list_keys(&sdk, b).await {
        assert!(
            key.starts_with("in/") || key.starts_with("failures/") || key.starts_with("results/"),
            "{key}"
        );
    }
    assert_eq!(
        metrics.jobs(Outcome::Failed) + metrics.jobs(Outcome::Expired),
        cases.len() as u64
    );
    assert_eq!(metrics.jobs(Outcome::Expired), 1);

    // The worker is alive and still does good work.
    send(
        &sdk,
        &res.queue_url,
        &format!(r#"{{"inputLocation":"s3://{b}/in/shapes.mp4","inferenceId":"good"}}"#),
    )
    .await;
    let ok = notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(90)).await;
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0]["inferenceId"], "good");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        depth(&sdk, &res.queue_url).await,
        (0, 0),
        "every message deleted"
    );
    stop.cancel();
    task.await.unwrap();
}

/// When the result cannot be stored (here: the output bucket does not exist) the
/// request is not at fault: the message is retried, never deleted, and the queue's
/// redrive policy moves it to the DLQ after maxReceiveCount. The worker does not spin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infrastructure_failures_are_retried_then_dead_lettered() {
    let (_moto, sdk, res) = with_sample_video(2).await;
    let mut cfg = config(&res, "no-such-output-bucket");
    cfg.defaults.sampling = Sampling::EveryNth(50);
    let (stop, metrics, task) = start_worker(&sdk, &res, cfg).await;
    send(
        &sdk,
        &res.queue_url,
        &format!(
            r#"{{"inputLocation":"s3://{}/in/shapes.mp4","inferenceId":"doomed"}}"#,
            res.bucket
        ),
    )
    .await;
    let start = std::time::Instant::now();
    loop {
        let (dlq, _) = depth(&sdk, &res.dlq_url).await;
        if dlq == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the message never reached the DLQ"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        metrics.jobs(Outcome::Retried),
        2,
        "processed exactly maxReceiveCount times"
    );
    assert_eq!(depth(&sdk, &res.queue_url).await, (0, 0));
    assert!(
        notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(1))
            .await
            .is_empty()
    );
    assert!(
        notifications(&sdk, &res.error_inbox, 1, Duration::from_secs(1))
            .await
            .is_empty()
    );
    stop.cancel();
    task.await.unwrap();
}

/// Shutdown with a job in flight: it finishes within the drain timeout, or its message
/// is handed back (visible again at once) with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_or_hands_back() {
    let (_moto, sdk, res) = with_sample_video(5).await;
    let msg = |id: &str| {
        format!(
            r#"{{"inputLocation":"s3://{}/in/shapes.mp4","inferenceId":"{id}","params":{{"frameInterval":1}}}}"#,
            res.bucket
        )
    };

    // Drain: generous timeout, the job completes.
    let (stop, metrics, task) = start_worker(&sdk, &res, config(&res, &res.bucket)).await;
    send(&sdk, &res.queue_url, &msg("drained")).await;
    wait_in_flight(&sdk, &res.queue_url).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(metrics.jobs(Outcome::Completed), 1);
    assert_eq!(
        notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    assert_eq!(depth(&sdk, &res.queue_url).await, (0, 0));

    // Hand back: no grace at all.
    let mut cfg = config(&res, &res.bucket);
    cfg.drain_timeout = Duration::from_millis(100);
    let (stop, metrics, task) = start_worker(&sdk, &res, cfg).await;
    send(&sdk, &res.queue_url, &msg("handed-back")).await;
    wait_in_flight(&sdk, &res.queue_url).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(metrics.jobs(Outcome::HandedBack), 1);
    assert_eq!(
        depth(&sdk, &res.queue_url).await,
        (1, 0),
        "visible again at once"
    );
    assert!(download(&sdk, &res.bucket, "results/handed-back.out")
        .await
        .is_none());
    assert!(
        notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(2))
            .await
            .is_empty()
    );
}

/// A message that reaches the worker's last long poll, after the shutdown signal, is
/// given back at once rather than left invisible for a whole visibility timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_caught_by_the_last_long_poll_is_handed_back() {
    let (_moto, sdk, res) = with_sample_video(3).await;
    let mut cfg = config(&res, &res.bucket);
    cfg.wait_time_s = 5;
    cfg.visibility_timeout_s = 120;
    let (stop, metrics, task) = start_worker(&sdk, &res, cfg).await;
    // The queue is empty: the worker sits in a long poll.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let body = format!(
        r#"{{"inputLocation":"s3://{}/in/shapes.mp4","inferenceId":"late"}}"#,
        res.bucket
    );
    send(&sdk, &res.queue_url, &body).await;
    task.await.unwrap();
    assert_eq!(
        metrics.jobs(Outcome::Completed),
        0,
        "no new work after the signal"
    );
    assert_eq!(
        depth(&sdk, &res.queue_url).await,
        (1, 0),
        "the message is visible again, not held for 120 s"
    );
}

async fn wait_in_flight(sdk: &aws_config::SdkConfig, queue: &str) {
    let start = std::time::Instant::now();
    while depth(sdk, queue).await.1 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the worker never took the message"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the download, into decoding and inference.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// No segment object is left in `bucket`.
async fn assert_no_parts(sdk: &aws_config::SdkConfig, bucket: &str) {
    let left: Vec<String> = list_keys(sdk, bucket)
        .await
        .into_iter()
        .filter(|k| k.contains(".parts/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// One video across the fleet: a request split into 1-second segments, processed by
/// three workers, gives byte for byte the document one worker gives for the whole
/// video (tracks included), one notification, and leaves no part behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_video_gives_the_single_run_document() {
    let (_moto, sdk, res) = with_sample_video(3).await;
    let b = &res.bucket;
    let mut workers = Vec::new();
    for _ in 0..3 {
        let mut cfg = config(&res, b);
        cfg.concurrency = 1;
        workers.push(start_worker(&sdk, &res, cfg).await);
    }
    let params = r#""frameInterval":5,"track":true,"masks":true"#;
    for (id, extra) in [("whole", ""), ("split", r#","segmentSeconds":1"#)] {
        let body = format!(
            r#"{{"inputLocation":"s3://{b}/in/shapes.mp4","inferenceId":"{id}","params":{{{params}{extra}}}}}"#
        );
        send(&sdk, &res.queue_url, &body).await;
    }
    let mut notes = notifications(&sdk, &res.success_inbox, 2, Duration::from_secs(180)).await;
    // And no more.
    notes.extend(notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(3)).await);
    let mut ids: Vec<&str> = notes
        .iter()
        .map(|n| n["inferenceId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["split", "whole"], "one notification per request");
    let whole = download(&sdk, b, "results/whole.out").await.unwrap();
    let split = download(&sdk, b, "results/split.out").await.unwrap();
    let Predictions::V2(doc) = Predictions::parse(&split).unwrap() else {
        panic!("v2 expected")
    };
    assert_eq!(doc.frames.len(), 30);
    // Tracks run across the seams: the shapes keep one identity through the video.
    let tracks = doc.tracks.as_ref().expect("tracks");
    assert!(!tracks.is_empty() && tracks.len() <= 6, "{tracks:?}");
    assert!(
        whole == split,
        "the split document differs from the whole one:\n{}\n{}",
        String::from_utf8_lossy(&whole),
        String::from_utf8_lossy(&split)
    );
    let notes = notes.iter().find(|n| n["inferenceId"] == "split").unwrap();
    assert_eq!(
        notes["requestParameters"]["inputLocation"],
        format!("s3://{b}/in/shapes.mp4")
    );
    // Settled: every message deleted, the parts removed, nothing failed.
    let all = |o| workers.iter().map(|w| w.1.jobs(o)).sum::<u64>();
    let counts = || Outcome::ALL.map(|o| (o.label(), all(o)));
    // 6 s of video in 1 s segments: one settles the request, the others are parts.
    let duration_s = vidinfer::video::probe(sample_video()).unwrap().duration_s;
    let segments = vidinfer::sqs::segments::plan(Default::default(), duration_s.unwrap(), 1.0);
    assert_eq!(segments.len(), 6);
    assert!(
        poll_until(Duration::from_secs(20), || {
            let parts = all(Outcome::Part);
            async move { parts == 5 }
        })
        .await,
        "{:?}",
        counts()
    );
    assert_eq!(all(Outcome::Split), 1, "{:?}", counts());
    assert_eq!(all(Outcome::Completed), 2, "{:?}", counts());
    assert_eq!(all(Outcome::Failed) + all(Outcome::Retried), 0);
    let sampled: f64 = workers
        .iter()
        .map(|w| common::metric(&w.1.render(), "vidinfer_frames_sampled_total").unwrap())
        .sum();
    assert_eq!(sampled, 60.0, "each frame inferred once per request");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(depth(&sdk, &res.queue_url).await, (0, 0));
    assert_no_parts(&sdk, b).await;
    assert!(
        notifications(&sdk, &res.error_inbox, 1, Duration::from_secs(1))
            .await
            .is_empty()
    );
    for (stop, _, task) in workers {
        stop.cancel();
        task.await.unwrap();
    }
}

/// A segment that cannot be computed (here: the input object was replaced after the
/// split) fails the whole request once, with the reason; the other segments are
/// dropped and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_segment_fails_the_request_once() {
    let (_moto, sdk, res) = with_sample_video(3).await;
    let b = &res.bucket;
    let mut cfg = config(&res, b);
    cfg.concurrency = 1;
    cfg.segment_seconds = 1.0;
    let (stop, splitter, task) = start_worker(&sdk, &res, cfg.clone()).await;
    let body = format!(r#"{{"inputLocation":"s3://{b}/in/shapes.mp4","inferenceId":"poison"}}"#);
    send(&sdk, &res.queue_url, &body).await;
    assert!(
        poll_until(Duration::from_secs(60), || {
            let split = splitter.jobs(Outcome::Split);
            async move { split == 1 }
        })
        .await
    );
    // At most the one segment it may have started is done by this worker.
    stop.cancel();
    task.await.unwrap();
    let original = download(&sdk, b, "in/shapes.mp4").await.unwrap();
    let mut changed = original.clone();
    changed.extend_from_slice(b"trailing bytes");
    upload(&sdk, b, "in/shapes.mp4", changed).await;

    let (stop, metrics, task) = start_worker(&sdk, &res, cfg).await;
    let mut notes = notifications(&sdk, &res.error_inbox, 1, Duration::from_secs(60)).await;
    notes.extend(notifications(&sdk, &res.error_inbox, 1, Duration::from_secs(3)).await);
    assert_eq!(notes.len(), 1, "one failure notification: {notes:#?}");
    let reason = notes[0]["failureReason"].as_str().unwrap();
    assert_eq!(notes[0]["inferenceId"], "poison");
    assert!(
        reason.contains("the input object changed after the request was split")
            && reason.contains("segment "),
        "{reason}"
    );
    assert!(download(&sdk, b, "failures/poison-error.out")
        .await
        .is_some());
    assert!(download(&sdk, b, "results/poison.out").await.is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(depth(&sdk, &res.queue_url).await, (0, 0));
    assert_eq!(depth(&sdk, &res.dlq_url).await, (0, 0));
    let settled = splitter.jobs(Outcome::Part) + metrics.jobs(Outcome::Part);
    assert_eq!(metrics.jobs(Outcome::Failed), 1);
    assert_eq!(settled, 5, "the other segments are parts or dropped");
    assert_no_parts(&sdk, b).await;
    assert!(
        notifications(&sdk, &res.success_inbox, 1, Duration::from_secs(1))
            .await
            .is_empty()
    );
    stop.cancel();
    task.await.unwrap();
}

/// The claim's primitive on the wire: of two conditional writes of one key, the first
/// creates it and the second is told it exists (HTTP 412), leaving the first's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_write_creates_once() {
    let (_moto, sdk, res) = with_sample_video(3).await;
    let storage = vidinfer::storage::Storage::new(&sdk);
    let uri: vidinfer::storage::S3Uri = format!("s3://{}/results/.parts/x/claim.json", res.bucket)
        .parse()
        .unwrap();
    let first = storage.put_if_absent(&uri, b"first".to_vec(), "application/json");
    assert!(first.await.unwrap(), "created");
    let second = storage.put_if_absent(&uri, b"second".to_vec(), "application/json");
    assert!(!second.await.unwrap(), "already there");
    let stored = download(&sdk, &res.bucket, "results/.parts/x/claim.json").await;
    assert_eq!(stored.as_deref(), Some(&b"first"[..]));
}
