//! Faults under load: 220 requests (200 good, 20 naming a missing object) across three
//! `vidinfer-worker sqs` processes while one worker is SIGKILLed and restarted several
//! times, the AWS endpoint goes offline for a few seconds (every connection cut and
//! refused, as in a restart), and a share of S3 object PUTs fail with 503 SlowDown —
//! all through a fault-injecting proxy in front of moto (tests/common/faults.rs).
//!
//! Afterwards every inferenceId has its output (or error) object and a Completed (or
//! Failed) notification; nothing is lost or dead-lettered; duplicates occur only as
//! at-least-once delivery allows, and each duplicate carries the identical result.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::faults::FaultProxy;
use common::moto::*;

const GOOD: usize = 200;
const BAD: usize = 20;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vidinfer-worker"))
}

fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_under_kills_outages_and_failing_puts() {
    // Enough receives that retries from the faults below never dead-letter a request.
    let (moto, sdk, res) = with_sample_video(20).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    proxy
        .state
        .fail_every_nth_put
        .store(5, std::sync::atomic::Ordering::SeqCst);
    let env: Vec<(&'static str, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| {
            if k == "AWS_ENDPOINT_URL" {
                (k, proxy.endpoint.clone())
            } else {
                (k, v)
            }
        })
        .collect();

    let mut ids = Vec::new();
    for i in 0..GOOD + BAD {
        let id = format!("load-{i:03}");
        let key = if i < GOOD {
            "in/shapes.mp4"
        } else {
            "in/missing.mp4"
        };
        let body = serde_json::json!({
            "inputLocation": format!("s3://{}/{key}", res.bucket),
            "inferenceId": id,
            "params": {"frameInterval": 50},
        });
        send(&sdk, &res.queue_url, &body.to_string()).await;
        ids.push(id);
    }

    // One job at a time per worker: batches are never merged across requests, so a
    // redelivered request computes exactly the same result.
    let args = [
        "--concurrency",
        "1",
        "--visibility-timeout",
        "10",
        "--retry-backoff",
        "1",
        "--include-response-body",
        "--torch-threads",
        "1",
    ];
    let mut workers: Vec<Child> = (0..3)
        .map(|_| spawn_sqs_worker(exe(), &env, &res, &args))
        .collect();

    let mut notes: Vec<serde_json::Value> = Vec::new();
    let seen = |notes: &[serde_json::Value]| {
        notes
            .iter()
            .filter_map(|n| n["inferenceId"].as_str().map(str::to_string))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let start = Instant::now();
    let mut kills = 0;
    let mut outage_done = false;
    let deadline = Duration::from_secs(420);
    while seen(&notes) < ids.len() && start.elapsed() < deadline {
        let done = seen(&notes);
        // Chaos, keyed to progress so it lands mid-run on any machine speed.
        if kills < 3 && done >= 20 + kills * 45 {
            kill9(&mut workers[0]);
            kills += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
            workers[0] = spawn_sqs_worker(exe(), &env, &res, &args);
        }
        if !outage_done && done >= 80 {
            proxy.set_offline(true);
            tokio::time::sleep(Duration::from_secs(5)).await;
            proxy.set_offline(false);
            outage_done = true;
        }
        for inbox in [&res.success_inbox, &res.error_inbox] {
            notes.extend(notifications(&sdk, inbox, 10, Duration::from_millis(500)).await);
        }
        for (i, w) in workers.iter_mut().enumerate() {
            assert!(w.try_wait().unwrap().is_none(), "worker {i} exited");
        }
    }
    // Late duplicates (a redelivery racing the last deletes) still arrive: collect them.
    for inbox in [&res.success_inbox, &res.error_inbox] {
        notes.extend(notifications(&sdk, inbox, usize::MAX, Duration::from_secs(3)).await);
    }
    for w in &mut workers {
        kill9(w);
    }
    let st = &proxy.state;
    let failed_puts = st.failed_puts.load(std::sync::atomic::Ordering::SeqCst);
    let dropped = st.dropped.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "{} notifications for {} requests; {kills} SIGKILLs; {failed_puts} PUTs failed; \
         {dropped} connections cut or refused; {:.0} s",
        notes.len(),
        ids.len(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(kills, 3, "the chaos schedule ran");
    assert!(outage_done);
    assert!(failed_puts > 0, "PUT failures were injected");
    assert!(dropped > 0, "the outage cut connections");

    let mut by_id: BTreeMap<&str, Vec<&serde_json::Value>> = BTreeMap::new();
    for n in &notes {
        by_id
            .entry(n["inferenceId"].as_str().unwrap())
            .or_default()
            .push(n);
    }
    let keys: std::collections::BTreeSet<String> =
        list_keys(&sdk, &res.bucket).await.into_iter().collect();
    let mut duplicates = 0;
    for (i, id) in ids.iter().enumerate() {
        let got = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id} was lost: no notification"));
        let (status, object) = if i < GOOD {
            ("Completed", format!("results/{id}.out"))
        } else {
            ("Failed", format!("results/{id}-error.out"))
        };
        assert!(keys.contains(&object), "{id}: no object {object}");
        for n in got {
            assert_eq!(n["invocationStatus"], status, "{id}: {n:#}");
        }
        if got.len() > 1 {
            duplicates += got.len() - 1;
            // At-least-once: a redelivered request gives the identical answer.
            for n in &got[1..] {
                assert_eq!(n["responseBody"], got[0]["responseBody"], "{id}");
                assert_eq!(n["failureReason"], got[0]["failureReason"], "{id}");
                assert_eq!(
                    n["responseParameters"], got[0]["responseParameters"],
                    "{id}"
                );
            }
        }
        if i < GOOD {
            let stored = download(&sdk, &res.bucket, &object).await.unwrap();
            assert_eq!(
                got[0]["responseBody"]["content"]
                    .as_str()
                    .unwrap()
                    .as_bytes(),
                &stored[..],
                "{id}: the notification carries the stored result"
            );
        }
    }
    eprintln!("{duplicates} duplicate notifications");
    assert_eq!(by_id.len(), ids.len(), "no notification for an unknown id");
    assert_eq!(depth(&sdk, &res.queue_url).await, (0, 0), "queue drained");
    assert_eq!(
        depth(&sdk, &res.dlq_url).await,
        (0, 0),
        "nothing dead-lettered"
    );
}
