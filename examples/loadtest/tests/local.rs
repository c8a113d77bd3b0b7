//! A short local run end to end, through the built binary: a moto server, autoscaled
//! `vidinfer-worker` processes on the fixture model, 30 requests in one burst. Checks
//! what the load test promises: nothing lost, every request completed, duplicates (if
//! any) identical to the first notification, the fleet scaled out from zero and back
//! in, and the output files exist and parse. Nothing here depends on wall-clock time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use vidinfer_loadtest::record::{read_csv, Kind};
use vidinfer_loadtest::summary::Summary;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tests/fixtures/model/model.pt").is_file())
        .expect("the repository root")
        .to_path_buf()
}

#[test]
fn a_short_local_run_scales_out_and_in_and_loses_nothing() {
    let bin = Path::new(env!("CARGO_BIN_EXE_vidinfer-loadtest"));
    let worker = bin.with_file_name("vidinfer-worker");
    assert!(
        worker.is_file(),
        "{} is missing: build the workspace first (`cargo build --release --workspace`, as scripts/test.sh does)",
        worker.display()
    );
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(bin)
        .current_dir(repo())
        .args(["local", "--count", "30", "--shape", "burst"])
        .args([
            "--min-workers",
            "0",
            "--max-workers",
            "3",
            "--queue-length",
            "4",
        ])
        .args(["--cooldown", "3", "--polling-interval", "0.5"])
        .args(["--custom-attributes", "frame_interval=30"])
        .args(["--sample-every", "0.5", "--progress-every", "10"])
        .args(["--deadline", "110", "--chart-size", "900x700"])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run vidinfer-loadtest");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "vidinfer-loadtest failed ({}):\n{stderr}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout)
    );

    let summary: Summary =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.sent, 30, "{stderr}");
    assert_eq!(summary.lost, 0, "lost: {:?}", summary.lost_ids);
    assert_eq!(summary.completed, 30, "{:?}", summary.failures_by_reason);
    assert_eq!(summary.failed, 0);
    assert_eq!(summary.conflicting_duplicates, 0);
    assert_eq!(summary.end_to_end_s.count, 30);
    assert!(summary.end_to_end_s.p50 > 0.0 && summary.processing_s.p50 > 0.0);
    assert!(summary.throughput_per_s > 0.0);
    let workers = summary.workers.expect("the worker count is sampled");
    assert_eq!(workers.min, 0, "the fleet starts from zero");
    assert!(workers.max >= 2, "the fleet scaled out: {workers:?}");
    assert_eq!(workers.last, 0, "and back in: {workers:?}");
    assert!(
        summary.scale_outs >= 1 && summary.scale_ins >= 1,
        "{summary:?}"
    );
    assert_eq!(summary.worker_crashes, 0);
    assert_eq!(summary.dead_lettered, Some(0));

    let events = read_csv(&out.path().join("events.csv")).unwrap();
    let sent: Vec<&str> = events
        .iter()
        .filter(|e| e.event == Kind::Sent)
        .filter_map(|e| e.inference_id.as_deref())
        .collect();
    assert_eq!(sent.len(), 30);
    let mut notes: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.event == Kind::Notified) {
        notes
            .entry(e.inference_id.as_deref().unwrap())
            .or_default()
            .push(e);
    }
    for id in &sent {
        let n = notes
            .get(id)
            .unwrap_or_else(|| panic!("{id} was never notified"));
        assert_eq!(n[0].status.as_deref(), Some("Completed"), "{id}");
        assert!(n[0].result_hash.is_some(), "{id}: the result is inline");
        for dup in &n[1..] {
            assert_eq!(
                (&dup.status, &dup.location, &dup.result_hash),
                (&n[0].status, &n[0].location, &n[0].result_hash),
                "{id}: a duplicate differs from the first notification"
            );
        }
    }
    // Scale-in happened by the autoscaler's decision, not only at the end of the run:
    // a worker was stopped for scale-in and the fleet sampled at zero afterwards.
    let scale_in = events
        .iter()
        .position(|e| e.event == Kind::WorkerStopping && e.reason.as_deref() == Some("scale-in"))
        .expect("a worker was stopped by scale-in");
    assert!(events[scale_in..]
        .iter()
        .any(|e| e.event == Kind::Sample && e.workers == Some(0)));
    assert!(events
        .iter()
        .filter(|e| e.event == Kind::WorkerExited)
        .all(|e| e
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("after SIGTERM"))));

    let png = out.path().join("chart.png");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(image::image_dimensions(&png).unwrap(), (900, 700));
    image::open(&png).expect("chart.png decodes");
}
