//! `vidinfer-worker run` over several videos under one model load: files, a
//! directory, S3 objects and prefixes (against a moto server) in; a directory or an S3
//! prefix out; a failed video reported while the others are still done; usage mistakes
//! refused before the model loads.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::moto::*;
use common::*;

/// Every 50th frame: three per video, so each run takes a few seconds.
const INTERVAL: &[&str] = &["--frame-interval", "50"];

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vidinfer-worker"))
}

fn run(args: &[&str], env: &[(&'static str, String)]) -> Output {
    Command::new(exe())
        .arg("run")
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `frames` of a single-input run on the sample video (stdout), computed once.
fn reference_frames() -> &'static serde_json::Value {
    static FRAMES: OnceLock<serde_json::Value> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let model = fixture_model();
        let video = sample_video();
        let mut args = vec!["--model", model.to_str().unwrap(), video.to_str().unwrap()];
        args.extend(INTERVAL);
        let out = run(&args, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["frames"].as_array().unwrap().len(), 3);
        doc["frames"].clone()
    })
}

fn frames_of(bytes: &[u8]) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    doc["frames"].clone()
}

/// `dir/name`, a copy of the sample video.
fn sample_copy(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::copy(sample_video(), &path).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn two_files_into_a_new_directory_give_each_its_single_run_document() {
    let dir = scratch();
    let a = sample_copy(dir.path(), "a.mp4");
    let b = sample_copy(dir.path(), "b.mov");
    let out = dir.path().join("out");
    let model = fixture_model();
    let mut args = vec!["--model", model.to_str().unwrap(), &a, &b, "-o"];
    args.push(out.to_str().unwrap());
    args.extend(INTERVAL);
    let o = run(&args, &[]);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(o.stdout.is_empty());
    for name in ["a.json", "b.json"] {
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert_eq!(&frames_of(&bytes), reference_frames(), "{name}");
    }
    // One summary line per video, saying where its document went, then the count.
    assert!(
        stderr.contains(&format!("-> {}", out.join("a.json").display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("-> {}", out.join("b.json").display())),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().last(),
        Some("2 inputs: 2 done, 0 failed"),
        "{stderr}"
    );
}

/// A directory stands for the videos directly in it, by extension, in name order;
/// with JSON logs, every line is JSON and the run ends with a counting line.
#[test]
fn a_directory_input_is_its_videos_in_name_order() {
    let dir = scratch();
    let videos = dir.path().join("videos");
    std::fs::create_dir_all(videos.join("sub")).unwrap();
    sample_copy(&videos, "b.MP4");
    sample_copy(&videos, "a.mkv.mp4");
    sample_copy(&videos.join("sub"), "deeper.mp4");
    std::fs::write(videos.join("notes.txt"), "not a video").unwrap();
    let out = dir.path().join("out");
    let model = fixture_model();
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        videos.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend(INTERVAL);
    let o = Command::new(exe())
        .args(["--log-format", "json", "run"])
        .args(&args)
        .output()
        .unwrap();
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, ["a.mkv.json", "b.json"]);
    for name in &written {
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert_eq!(&frames_of(&bytes), reference_frames(), "{name}");
    }
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let done: Vec<&str> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "job finished")
        .map(|l| l["fields"]["video"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = ["a.mkv.mp4", "b.MP4"]
        .iter()
        .map(|n| videos.join(n).display().to_string())
        .collect();
    assert_eq!(done, expected, "{stderr}");
    let end = lines.last().unwrap();
    assert_eq!(end["fields"]["message"], "inputs finished", "{stderr}");
    assert_eq!(
        (&end["fields"]["done"], &end["fields"]["failed"]),
        (&2.into(), &0.into())
    );
}

/// A text file named .mp4 among good videos: it fails alone, named in its error; the
/// others are written; the exit status is 1.
#[test]
fn a_bad_input_fails_alone() {
    let dir = scratch();
    let a = sample_copy(dir.path(), "a.mp4");
    let c = sample_copy(dir.path(), "c.mp4");
    let bad = dir.path().join("bad.mp4");
    std::fs::write(&bad, "this is a text file, not a video\n".repeat(50)).unwrap();
    let out = dir.path().join("out");
    let model = fixture_model();
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        &a,
        bad.to_str().unwrap(),
        &c,
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend(INTERVAL);
    let o = run(&args, &[]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    for name in ["a.json", "c.json"] {
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert_eq!(&frames_of(&bytes), reference_frames(), "{name}");
    }
    assert!(!out.join("bad.json").exists());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(
        errors[0].contains(&bad.display().to_string()) && errors[0].contains("not a video"),
        "{stderr}"
    );
    assert_eq!(errors[1], "error: 3 inputs: 2 done, 1 failed");
}

/// Usage mistakes with several inputs exit 2 before the model loads (its path is bogus,
/// and it is never the error), and leave no output directory behind.
#[test]
fn usage_mistakes_with_several_inputs_exit_2_before_the_model_loads() {
    let dir = scratch();
    let a = sample_copy(dir.path(), "a.mp4");
    std::fs::create_dir(dir.path().join("other")).unwrap();
    let a_again = sample_copy(&dir.path().join("other"), "a.mov");
    let file = dir.path().join("existing.json");
    std::fs::write(&file, "{}").unwrap();
    let out = dir.path().join("out");
    let new_json = dir.path().join("new.json");
    let new_json = new_json.to_str().unwrap();
    let (file, out) = (file.to_str().unwrap(), out.to_str().unwrap());
    let v = sample_video();
    let v = v.to_str().unwrap();
    for (args, expect) in [
        (vec![v, &a, "-o", file], "is a file"),
        (vec![v, &a, "-o", new_json], "looks like a file name"),
        (vec![v, &a], "-o DIR"),
        (vec![v, &a, "-o", "-"], "-o DIR"),
        (vec![v, "/no/such/video.mp4", "-o", out], "no such file"),
        (vec![&a, &a_again, "-o", out], "would both write"),
    ] {
        let mut all = vec!["--model", "/no/such/model.pt"];
        all.extend(args);
        let o = run(&all, &[]);
        let e = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {e}");
        assert!(e.contains(expect) && !e.contains("model"), "{all:?}: {e}");
        assert!(!Path::new(out).exists(), "{all:?}");
    }
}

/// S3 in (an object and a prefix) and S3 out against moto: each video's document is
/// uploaded as <prefix>/<name>.json and equals a local run's; objects that are not
/// videos by extension, or below a deeper prefix, are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_and_prefixes_round_trip() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let bucket = unique("vidinfer-run");
    s3(&sdk)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let video = std::fs::read(sample_video()).unwrap();
    for key in [
        "in/one.mp4",
        "in/two.mov",
        "in/sub/deeper.mp4",
        "single/three.mp4",
    ] {
        upload(&sdk, &bucket, key, video.clone()).await;
    }
    upload(&sdk, &bucket, "in/notes.txt", b"not a video".to_vec()).await;
    let model = fixture_model();
    let prefix = format!("s3://{bucket}/in/");
    let object = format!("s3://{bucket}/single/three.mp4");
    let output = format!("s3://{bucket}/results/");
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        &prefix,
        &object,
        "-o",
        &output,
    ];
    args.extend(INTERVAL);
    let o = run(&args, &moto.env());
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let mut results: Vec<String> = list_keys(&sdk, &bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with("results/"))
        .collect();
    results.sort();
    assert_eq!(
        results,
        ["results/one.json", "results/three.json", "results/two.json"]
    );
    for key in &results {
        let bytes = download(&sdk, &bucket, key).await.unwrap();
        assert_eq!(&frames_of(&bytes), reference_frames(), "{key}");
    }
    assert_eq!(
        stderr.lines().last(),
        Some("3 inputs: 3 done, 0 failed"),
        "{stderr}"
    );

    // Objects over --max-input-mb are refused from the listing: with nothing left to
    // do the model never loads (its path is bogus here, and it is never the error).
    let o = run(
        &[
            "--model",
            "/no/such/model.pt",
            &prefix,
            "-o",
            &output,
            "--max-input-mb",
            "0",
        ],
        &moto.env(),
    );
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("over the limit").count(), 2, "{stderr}");
    assert!(!stderr.contains("model"), "{stderr}");
    assert!(stderr.contains("2 inputs: 0 done, 2 failed"), "{stderr}");

    // A missing object fails alone, found in its turn after the model loaded.
    let missing = format!("s3://{bucket}/single/missing.mp4");
    let mut args = vec![
        "--model",
        model.to_str().unwrap(),
        &object,
        &missing,
        "-o",
        &output,
    ];
    args.extend(INTERVAL);
    let o = run(&args, &moto.env());
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{missing} does not exist")),
        "{stderr}"
    );
    assert!(stderr.contains("2 inputs: 1 done, 1 failed"), "{stderr}");

    // An output bucket that does not exist is a usage mistake, found before the model
    // loads.
    let nowhere = format!("s3://{}/results/", unique("no-such-bucket"));
    let o = run(
        &[
            "--model",
            "/no/such/model.pt",
            &object,
            &missing,
            "-o",
            &nowhere,
        ],
        &moto.env(),
    );
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not exist") && !stderr.contains("model"),
        "{stderr}"
    );
}
