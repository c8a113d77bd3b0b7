//! The SageMaker container contract over real HTTP on 127.0.0.1:0, with the fixture
//! model: readiness, results in both schemas, every bad-input class, limits, and a
//! graceful shutdown with a request in flight.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;
use vidinfer::http::{AppState, ServeConfig};
use vidinfer::metrics::{Door, Metrics};
use vidinfer::model::{Model, ModelConfig};
use vidinfer::params::Params;
use vidinfer::pipeline::Engine;
use vidinfer::schema::Predictions;
use vidinfer::video::Sampling;

fn model() -> Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL
        .get_or_init(|| Model::load(ModelConfig::new(fixture_model())).expect("fixture model"))
        .clone()
}

struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(max_body: u64, max_concurrency: usize, ready: bool) -> Server {
    start_with(max_body, max_concurrency, ready, Duration::from_secs(600)).await
}

async fn start_with(
    max_body: u64,
    max_concurrency: usize,
    ready: bool,
    job_timeout: Duration,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(
        ServeConfig {
            max_body_bytes: max_body,
            max_concurrency,
            defaults: Params {
                sampling: Sampling::EveryNth(10),
                min_score: Some(0.5),
                ..Params::default()
            },
            temp_dir: std::env::temp_dir(),
            job_timeout,
        },
        Arc::new(Metrics::new(Door::Http)),
    );
    if ready {
        state.set_engine(Engine::new(model()));
    }
    let stop = CancellationToken::new();
    let router = vidinfer::http::router(state.clone());
    let task = tokio::spawn(vidinfer::http::serve(
        listener,
        router,
        stop.clone(),
        Duration::from_secs(30),
    ));
    Server {
        addr,
        state,
        stop,
        task,
    }
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    /// A response header's value (names compared without case).
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A plain HTTP/1.1 exchange (one request per connection), run off the async threads.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let method = method.to_string();
    let path = path.to_string();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, head, body) = http_exchange_head(addr, &method, &path, &headers, &body);
        Reply { status, head, body }
    })
    .await
    .unwrap()
}

fn video() -> Vec<u8> {
    std::fs::read(sample_video()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_turns_ready_once_the_model_is_loaded() {
    let s = start(1 << 30, 2, false).await;
    assert_eq!(http(s.addr, "GET", "/ping", &[], vec![]).await.status, 503);
    let r = http(
        s.addr,
        "POST",
        "/invocations",
        &[("Content-Type", "video/mp4")],
        video(),
    )
    .await;
    assert_eq!(r.status, 503, "no inference before the model is ready");
    s.state.set_engine(Engine::new(model()));
    assert_eq!(http(s.addr, "GET", "/ping", &[], vec![]).await.status, 200);
    let m = http(s.addr, "GET", "/metrics", &[], vec![]).await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&m.body);
    // The refused request counted under its status; the model named once it loaded;
    // no queue-only series on this door.
    assert_eq!(
        common::metric(&text, "vidinfer_http_requests_total{status=\"503\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("vidinfer_model_info{device=\"cpu\",model="),
        "{text}"
    );
    assert!(!text.contains("vidinfer_jobs_total"), "{text}");
    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_answer_v2_by_default_and_legacy_on_request() {
    let s = start(1 << 30, 2, true).await;
    let r = http(
        s.addr,
        "POST",
        "/invocations",
        &[
            ("Content-Type", "video/mp4"),
            ("Accept", "application/json"),
        ],
        video(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let Predictions::V2(doc) = Predictions::parse(&r.body).unwrap() else {
        panic!("v2 expected")
    };
    assert_eq!(
        doc.frames.iter().map(|f| f.index).collect::<Vec<_>>(),
        (0..150).step_by(10).collect::<Vec<_>>()
    );
    assert!(doc.frames.iter().all(|f| f.detections.len() >= 3));

    let r = http(
        s.addr,
        "POST",
        "/invocations",
        &[
            ("Content-Type", "application/octet-stream"),
            (
                "X-Amzn-SageMaker-Custom-Attributes",
                "format=legacy;frame_interval=15",
            ),
        ],
        video(),
    )
    .await;
    assert_eq!(r.status, 200);
    let Predictions::Legacy(frames) = Predictions::parse(&r.body).unwrap() else {
        panic!("legacy expected")
    };
    assert_eq!(frames.len(), 10);
    // No resize chosen: stretched to the legacy 1024x1024 frame, as the old system did,
    // so boxes are in that frame's coordinates (a fitted frame is 320 wide).
    assert!(frames.iter().flat_map(|f| &f.boxes).any(|b| b[2] > 320.0));

    // Both answers are in the status counter and its histogram; the model ran batches.
    let m = http(s.addr, "GET", "/metrics", &[], vec![]).await;
    let text = String::from_utf8_lossy(&m.body);
    let metric = |series: &str| common::metric(&text, series).unwrap_or(-1.0);
    assert_eq!(metric("vidinfer_http_requests_total{status=\"200\"}"), 2.0);
    assert_eq!(
        metric("vidinfer_http_request_duration_seconds_count{status=\"200\"}"),
        2.0
    );
    assert_eq!(metric("vidinfer_frames_sampled_total"), 25.0);
    assert_eq!(
        metric("vidinfer_stage_duration_seconds_count{stage=\"infer\"}"),
        2.0
    );
    // The model's batches are counted (its other users in this test binary too, as
    // the tests share one model): at least these 25 pictures, in batches of ≤ 4.
    let (pictures, batches) = (
        metric("vidinfer_batch_size_sum"),
        metric("vidinfer_batch_size_count"),
    );
    assert!(
        pictures >= 25.0 && batches >= pictures / 4.0,
        "{pictures} {batches}"
    );
    s.stop.cancel();
}

/// Every answer carries the request's id: SageMaker's inference id, else the caller's
/// X-Request-Id, else a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_the_request_id() {
    let s = start(1 << 30, 2, true).await;
    let ct = ("Content-Type", "video/mp4");
    let r = http(
        s.addr,
        "POST",
        "/invocations",
        &[
            ct,
            ("X-Amzn-SageMaker-Inference-Id", "inf-1"),
            ("X-Request-Id", "r-1"),
        ],
        video(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id").as_deref(), Some("inf-1"));
    // On a refusal too, with the caller's own id.
    let r = http(
        s.addr,
        "POST",
        "/invocations",
        &[ct, ("Accept", "text/csv"), ("X-Request-Id", "r-2")],
        video(),
    )
    .await;
    assert_eq!(r.status, 406);
    assert_eq!(r.header("x-request-id").as_deref(), Some("r-2"));
    // None given, or one not fit for a log line: a new UUID.
    for headers in [vec![ct], vec![ct, ("X-Request-Id", "a b\tc")]] {
        let r = http(s.addr, "POST", "/invocations", &headers, b"x".to_vec()).await;
        let id = r.header("x-request-id").expect("an id");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
    }
    s.stop.cancel();
}

/// (what, headers, body, expected status)
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_their_status_and_the_server_stays_up() {
    let s = start(2 * 1024 * 1024, 2, true).await;
    let dir = scratch();
    let playlist = format!(
        "#EXTM3U\n#EXTINF:1,\n{}\n#EXT-X-ENDLIST\n",
        sample_video().display()
    );
    let audio = dir.path().join("a.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=duration=1",
        "-c:a",
        "aac",
        audio.to_str().unwrap(),
    ]);
    let cases: Vec<Case> = vec![
        ("empty body", vec![], vec![], 400),
        (
            "random bytes",
            vec![("Content-Type", "video/mp4")],
            (0..50_000u32)
                .map(|i| (i.wrapping_mul(2654435761u32) >> 24) as u8)
                .collect(),
            415,
        ),
        (
            "json body",
            vec![("Content-Type", "application/json")],
            br#"{"inputLocation":"s3://b/k"}"#.to_vec(),
            415,
        ),
        (
            "playlist",
            vec![("Content-Type", "video/mp4")],
            playlist.into_bytes(),
            415,
        ),
        ("audio only", vec![], std::fs::read(&audio).unwrap(), 415),
        ("truncated", vec![], video()[..4000].to_vec(), 400),
        (
            "too large",
            vec![("Content-Type", "video/mp4")],
            vec![0u8; 3 * 1024 * 1024],
            413,
        ),
        (
            "bad attributes",
            vec![("X-Amzn-SageMaker-Custom-Attributes", "frame_interval=zero")],
            video(),
            400,
        ),
        (
            "bad format",
            vec![("X-Amzn-SageMaker-Custom-Attributes", "format=xml")],
            video(),
            400,
        ),
        ("unacceptable", vec![("Accept", "text/csv")], video(), 406),
    ];
    for (name, headers, body, status) in cases {
        let r = http(s.addr, "POST", "/invocations", &headers, body).await;
        assert_eq!(
            r.status,
            status,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if status != 413 || !r.body.is_empty() {
            let j = r.json();
            assert!(
                !j["message"].as_str().unwrap().is_empty(),
                "{name}: a reason"
            );
        }
        assert_eq!(
            http(s.addr, "GET", "/ping", &[], vec![]).await.status,
            200,
            "alive after {name}"
        );
    }
    let ok = http(s.addr, "POST", "/invocations", &[], video()).await;
    assert_eq!(ok.status, 200, "still serving");
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_limit_is_429_and_shutdown_waits_for_the_request_in_flight() {
    let s = start(1 << 30, 1, true).await;
    // Every frame: a slow request.
    let slow = |addr| {
        http(
            addr,
            "POST",
            "/invocations",
            &[("X-Amzn-SageMaker-Custom-Attributes", "frame_interval=1")],
            video(),
        )
    };
    let first = tokio::spawn(slow(s.addr));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = http(s.addr, "POST", "/invocations", &[], video()).await;
    assert_eq!(second.status, 429);
    assert!(second.json()["message"]
        .as_str()
        .unwrap()
        .contains("concurrent"));
    // SIGTERM equivalent while the first is still running: it completes.
    s.stop.cancel();
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    let Predictions::V2(doc) = Predictions::parse(&first.body).unwrap() else {
        panic!()
    };
    assert_eq!(doc.frames.len(), 150);
    s.task.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(s.addr).is_err(),
        "the listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_the_time_limit_is_504_and_the_server_carries_on() {
    // 150 frames through the model take far longer than 50 ms on any machine.
    let s = start_with(1 << 30, 2, true, Duration::from_millis(50)).await;
    let r = http(
        s.addr,
        "POST",
        "/invocations",
        &[
            ("Content-Type", "video/mp4"),
            ("X-Amzn-SageMaker-Custom-Attributes", "frame_interval=1"),
        ],
        video(),
    )
    .await;
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("per-job limit"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // The abandoned job released its slot: the next requests are served.
    let ping = http(s.addr, "GET", "/ping", &[], vec![]).await;
    assert_eq!(ping.status, 200);
    let r = http(
        s.addr,
        "POST",
        "/invocations",
        &[("Content-Type", "video/mp4")],
        vec![],
    )
    .await;
    assert_eq!(r.status, 400, "an empty body is still judged on its own");
    s.stop.cancel();
    s.task.await.unwrap().unwrap();
}
