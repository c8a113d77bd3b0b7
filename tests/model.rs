//! The model runtime and the engine, with the real fixture Mask R-CNN on real LibTorch,
//! checked against the sample video's ground truth.

mod common;

use std::sync::OnceLock;

use common::*;
use vidinfer::model::{Model, ModelConfig, ModelError};
use vidinfer::params::{Overrides, Params};
use vidinfer::pipeline::{Engine, Job, JobOutput};
use vidinfer::schema::{OutputFormat, Predictions, V2Output};
use vidinfer::video::{model_size, Resize, Sampling, Source};

/// One model for the whole test binary: loading is the slow part, and sharing it is
/// also what every front door does.
fn model() -> Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let mut cfg = ModelConfig::new(fixture_model());
            cfg.batch_size = 4;
            Model::load(cfg).expect("the fixture model loads")
        })
        .clone()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn run(params: Params) -> (JobOutput, Engine) {
    run_on(sample_video(), params)
}

fn run_on(video: std::path::PathBuf, params: Params) -> (JobOutput, Engine) {
    let engine = Engine::new(model());
    let job = Job {
        source: Source::Path(video),
        params,
    };
    let out = runtime()
        .block_on(engine.run(job, |_| {}))
        .expect("job runs");
    (out, engine)
}

fn base_params() -> Params {
    Params {
        sampling: Sampling::EveryNth(5),
        resize: Resize::Original,
        min_score: Some(0.5),
        masks: true,
        ..Params::default()
    }
}

fn v2_of(out: &JobOutput, engine: &Engine, params: &Params) -> V2Output {
    match Predictions::parse(&out.document(engine.model(), params)).unwrap() {
        Predictions::V2(v) => *v,
        other => panic!("expected v2, got {other:?}"),
    }
}

struct Score {
    found: usize,
    missed: usize,
    extra: usize,
    box_ious: Vec<f32>,
    mask_ious: Vec<f64>,
}

/// Match each ground-truth object to the best unused detection of the same class.
fn score(doc: &V2Output, truth: &SampleTruth) -> Score {
    let mut s = Score {
        found: 0,
        missed: 0,
        extra: 0,
        box_ious: vec![],
        mask_ious: vec![],
    };
    for f in &doc.frames {
        let gt = &truth.truth[f.index as usize];
        let mut used = vec![false; f.detections.len()];
        for o in &gt.objects {
            let best = f
                .detections
                .iter()
                .enumerate()
                .filter(|(j, d)| !used[*j] && d.label_id == o.label_id)
                .map(|(j, d)| (j, box_iou(o.bbox, d.bbox)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((j, iou)) if iou >= 0.5 => {
                    used[j] = true;
                    s.found += 1;
                    s.box_ious.push(iou);
                    assert_eq!(f.detections[j].label, o.label);
                    if let Some(m) = &f.detections[j].mask {
                        assert_eq!(m.size, [truth.height, truth.width]);
                        s.mask_ious.push(mask_iou(&m.decode(), &o.mask.decode()));
                    }
                }
                _ => s.missed += 1,
            }
        }
        s.extra += used.iter().filter(|u| !**u).count();
    }
    s
}

fn mean<T: Into<f64> + Copy>(v: &[T]) -> f64 {
    v.iter().map(|x| (*x).into()).sum::<f64>() / v.len().max(1) as f64
}

#[test]
fn fixture_model_finds_every_shape_in_the_sample_video() {
    let truth = SampleTruth::load();
    let params = base_params();
    let (out, engine) = run(params.clone());
    let doc = v2_of(&out, &engine, &params);

    // Indices and timestamps are the decoder's: every 5th frame, at index / fps.
    let indices: Vec<u64> = doc.frames.iter().map(|f| f.index).collect();
    assert_eq!(indices, (0..truth.frames).step_by(5).collect::<Vec<_>>());
    for f in &doc.frames {
        assert!((f.pts_s - truth.truth[f.index as usize].pts_s).abs() < 1e-6);
    }
    assert_eq!(
        (doc.video.width, doc.video.height),
        (truth.width, truth.height)
    );
    assert_eq!(
        doc.model.classes,
        vec!["__background__", "square", "circle", "triangle"]
    );

    let s = score(&doc, &truth);
    let objects = s.found + s.missed;
    assert!(
        objects > 90,
        "the sample has {objects} objects in sampled frames"
    );
    assert_eq!(
        s.missed, 0,
        "recall must be 1.0: missed {} of {objects}",
        s.missed
    );
    let precision = s.found as f64 / (s.found + s.extra) as f64;
    assert!(precision >= 0.95, "precision {precision:.3}");
    let box_iou = mean(&s.box_ious);
    assert!(box_iou >= 0.8, "mean box IoU {box_iou:.3}");
    assert_eq!(s.mask_ious.len(), s.found, "every detection carries a mask");
    let mask_iou = mean(&s.mask_ious);
    assert!(mask_iou >= 0.75, "mean mask IoU {mask_iou:.3}");
    assert_eq!(out.stats.frames_sampled, 30);
    assert!(
        out.stats.frames_decoded < truth.frames,
        "non-reference frames were skipped"
    );
}

/// Boxes are reported in source pixels whatever size the model saw; the legacy output
/// keeps the old system's frame coordinates.
#[test]
fn boxes_map_back_to_source_pixels_and_legacy_keeps_frame_pixels() {
    let truth = SampleTruth::load();
    let params = Params {
        resize: Resize::Stretch {
            width: 480,
            height: 300,
        },
        ..base_params()
    };
    let (out, engine) = run(params.clone());
    let doc = v2_of(&out, &engine, &params);
    assert_eq!(
        (doc.params.frame_width, doc.params.frame_height),
        (480, 300)
    );
    let s = score(&doc, &truth);
    assert_eq!(s.missed, 0);
    assert!(
        mean(&s.box_ious) >= 0.8,
        "mean box IoU {}",
        mean(&s.box_ious)
    );

    let legacy_params = Params {
        format: OutputFormat::Legacy,
        ..params.clone()
    };
    let legacy_bytes = out.document(engine.model(), &legacy_params);
    let Predictions::Legacy(legacy) = Predictions::parse(&legacy_bytes).unwrap() else {
        panic!("expected the legacy array");
    };
    assert_eq!(legacy.len(), doc.frames.len());
    let (sx, sy) = (480.0 / 320.0, 300.0 / 240.0);
    for (l, v) in legacy.iter().zip(&doc.frames) {
        assert_eq!(l.boxes.len(), v.detections.len());
        for ((b, label), d) in l.boxes.iter().zip(&l.labels).zip(&v.detections) {
            assert_eq!(*label, d.label_id);
            let expect = [
                d.bbox[0] * sx,
                d.bbox[1] * sy,
                d.bbox[2] * sx,
                d.bbox[3] * sy,
            ];
            for k in 0..4 {
                assert!((b[k] - expect[k]).abs() < 0.01, "{b:?} vs {expect:?}");
            }
        }
    }
    // The legacy array round-trips through the schema types unchanged.
    let reserialised = serde_json::to_vec(&legacy).unwrap();
    assert_eq!(reserialised, legacy_bytes);
    let raw: serde_json::Value = serde_json::from_slice(&legacy_bytes).unwrap();
    let first = raw[0].as_object().unwrap();
    let mut keys: Vec<&String> = first.keys().collect();
    keys.sort();
    assert_eq!(keys, ["boxes", "labels", "scores"]);
}

#[test]
fn min_score_filters_and_fps_sampling_work_through_the_engine() {
    let all = Params {
        min_score: None,
        masks: false,
        ..base_params()
    };
    let (out_all, engine) = run(all.clone());
    let strict = Params {
        min_score: Some(0.95),
        ..all.clone()
    };
    let doc_all = v2_of(&out_all, &engine, &all);
    let doc_strict = v2_of(&out_all, &engine, &strict);
    let n_all: usize = doc_all.frames.iter().map(|f| f.detections.len()).sum();
    let n_strict: usize = doc_strict.frames.iter().map(|f| f.detections.len()).sum();
    assert!(n_strict < n_all, "{n_strict} vs {n_all}");
    assert!(doc_strict
        .frames
        .iter()
        .flat_map(|f| &f.detections)
        .all(|d| d.score >= 0.95));
    assert!(doc_all
        .frames
        .iter()
        .flat_map(|f| &f.detections)
        .all(|d| d.mask.is_none()));

    let fps = Params {
        sampling: Sampling::Fps(2.0),
        ..all
    };
    let (out, _) = run(fps);
    let idx: Vec<u64> = out.frames.iter().map(|f| f.meta.index).collect();
    assert_eq!(idx, vec![0, 13, 25, 38, 50, 63, 75, 88, 100, 113, 125, 138]);
}

/// Concurrent jobs share the model thread (their batches may be merged) and get the
/// same answers as when run alone.
#[test]
fn concurrent_jobs_share_the_model_and_agree_with_sequential_runs() {
    let params = Params {
        sampling: Sampling::EveryNth(7),
        ..base_params()
    };
    let (alone, engine) = run(params.clone());
    let rt = runtime();
    let results = rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..3 {
            let engine = engine.clone();
            let params = params.clone();
            handles.push(tokio::spawn(async move {
                engine
                    .run(
                        Job {
                            source: Source::Path(sample_video()),
                            params,
                        },
                        |_| {},
                    )
                    .await
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().unwrap());
        }
        out
    });
    let key = |o: &JobOutput| {
        o.frames
            .iter()
            .map(|f| {
                (
                    f.meta.index,
                    f.detections
                        .iter()
                        .map(|d| (d.label_id, d.bbox.map(|v| (v * 10.0).round() as i64)))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    for r in &results {
        assert_eq!(key(r), key(&alone));
    }
}

/// The same TorchScript file on the same frames gives the same detections from Python
/// (torch + torchvision) and from Rust (tch + the patched torchvision ops).
#[test]
fn rust_and_python_agree_on_the_same_frames() {
    let dir = scratch();
    let mut dec = vidinfer::video::Decoder::open(
        sample_video().as_path(),
        vidinfer::video::DecodeOptions {
            sampling: Sampling::EveryNth(15),
            resize: Resize::Original,
            ..Default::default()
        },
    )
    .unwrap();
    let mut frames = Vec::new();
    let mut bin = Vec::new();
    while let Some(f) = dec.next_frame().unwrap() {
        bin.extend_from_slice(&f.meta.width.to_le_bytes());
        bin.extend_from_slice(&f.meta.height.to_le_bytes());
        bin.extend_from_slice(&f.rgb);
        frames.push(vidinfer::model::Image {
            width: f.meta.width,
            height: f.meta.height,
            rgb: f.rgb,
        });
    }
    let frames_path = dir.path().join("frames.bin");
    std::fs::write(&frames_path, &bin).unwrap();
    let model_path = fixture_model();
    let py = run_python(&[
        "scripts/torchscript_infer.py",
        model_path.to_str().unwrap(),
        frames_path.to_str().unwrap(),
    ]);
    let py: Vec<serde_json::Value> = serde_json::from_slice(&py).unwrap();
    let n = frames.len();
    let (rust, _) = model().infer_blocking(frames, false).unwrap();
    assert_eq!(py.len(), n);
    let mut compared = 0;
    for (p, r) in py.iter().zip(&rust) {
        let scores: Vec<f64> = serde_json::from_value(p["scores"].clone()).unwrap();
        let labels: Vec<i64> = serde_json::from_value(p["labels"].clone()).unwrap();
        let boxes: Vec<[f64; 4]> = serde_json::from_value(p["boxes"].clone()).unwrap();
        // Compare what either side is confident about; ordering is by score.
        let confident_py: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] > 0.3).collect();
        let confident_rs: Vec<&vidinfer::model::Detection> =
            r.iter().filter(|d| d.score > 0.3).collect();
        assert_eq!(confident_py.len(), confident_rs.len());
        for (&i, d) in confident_py.iter().zip(confident_rs) {
            assert_eq!(labels[i], d.label_id);
            assert!(
                (scores[i] - f64::from(d.score)).abs() < 1e-3,
                "score {} vs {}",
                scores[i],
                d.score
            );
            for k in 0..4 {
                assert!(
                    (boxes[i][k] - f64::from(d.bbox[k])).abs() < 0.05,
                    "box {:?} vs {:?}",
                    boxes[i],
                    d.bbox
                );
            }
            compared += 1;
        }
    }
    assert!(
        compared >= 3 * n,
        "compared {compared} detections over {n} frames"
    );
}

/// The tracks of `video` sampled with `sampling`, scored against its ground truth by
/// scripts/track_metrics.py (py-motmetrics: an implementation independent of ours).
fn track_metrics(video: &str, sampling: Sampling) -> (serde_json::Value, V2Output) {
    let params = Params {
        sampling,
        min_score: None,
        masks: false,
        ..base_params()
    };
    let clip = repo().join("tests/fixtures/sample").join(video);
    let (out, engine) = run_on(clip.clone(), params.clone());
    let dir = scratch();
    let doc = dir.path().join("doc.json");
    std::fs::write(&doc, out.document(engine.model(), &params)).unwrap();
    let truth = clip.with_extension("truth.json");
    let stdout = run_python(&[
        "scripts/track_metrics.py",
        "--truth",
        truth.to_str().unwrap(),
        "--doc",
        doc.to_str().unwrap(),
        "--allow-untracked",
    ]);
    let m: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    eprintln!("{video} {sampling:?}: {m}");
    (m, v2_of(&out, &engine, &params))
}

#[test]
fn tracks_on_the_sample_video_keep_every_identity() {
    let (m, doc) = track_metrics("shapes.mp4", Sampling::EveryNth(5));
    assert!(m["idf1"].as_f64().unwrap() >= 0.95, "{m}");
    assert_eq!(m["id_switches"], 0, "{m}");
    // Four objects in the truth (one enters halfway): four confident tracks.
    let tracks = doc.tracks.expect("tracking is on by default for v2");
    let confident: Vec<_> = tracks.iter().filter(|t| t.best_score > 0.9).collect();
    assert_eq!(confident.len(), 4, "{tracks:#?}");
    for t in &confident {
        assert!(t.frames >= 10 && t.first_frame <= t.last_frame, "{t:?}");
        let seen = doc
            .frames
            .iter()
            .flat_map(|f| &f.detections)
            .filter(|d| d.track_id == Some(t.id))
            .count() as u64;
        assert_eq!(seen, t.frames, "{t:?}");
    }
    assert!(doc.params.tracking.is_some());
}

#[test]
fn tracks_on_the_crowd_clip_survive_crossings_and_occlusions() {
    let (m, _) = track_metrics("crowd.mp4", Sampling::EveryNth(2));
    assert!(m["idf1"].as_f64().unwrap() >= 0.85, "{m}");
    assert!(m["mota"].as_f64().unwrap() >= 0.85, "{m}");
    // 1 fps: no target, reported (the resolve note of the tracking issue says what
    // degrades); it must still run and produce tracks.
    let (m, doc) = track_metrics("crowd.mp4", Sampling::Fps(1.0));
    assert!(m["frames"].as_u64().unwrap() >= 7, "{m}");
    assert!(!doc.tracks.unwrap().is_empty());
}

#[test]
fn tracking_can_be_turned_off_and_never_touches_the_legacy_array() {
    let on = base_params();
    let off = Params {
        track: None,
        ..base_params()
    };
    let (out_on, engine) = run(on.clone());
    let (out_off, _) = run(off.clone());
    let (doc_on, doc_off) = (v2_of(&out_on, &engine, &on), v2_of(&out_off, &engine, &off));
    assert!(doc_off.tracks.is_none() && doc_off.params.tracking.is_none());
    let ids = |d: &V2Output| {
        d.frames
            .iter()
            .flat_map(|f| &f.detections)
            .filter(|d| d.track_id.is_some())
            .count()
    };
    assert_eq!(ids(&doc_off), 0);
    assert!(ids(&doc_on) > 0);
    // Identities aside, the documents agree detection for detection.
    let strip = |mut d: V2Output| {
        d.tracks = None;
        d.params.tracking = None;
        for f in &mut d.frames {
            for det in &mut f.detections {
                det.track_id = None;
            }
        }
        d
    };
    assert_eq!(strip(doc_on), doc_off);
    let legacy = |p: &Params| Params {
        format: OutputFormat::Legacy,
        ..p.clone()
    };
    let (l_on, _) = run(legacy(&on));
    let (l_off, _) = run(legacy(&off));
    assert!(l_on.tracking.is_none());
    assert_eq!(
        l_on.document(engine.model(), &legacy(&on)),
        l_off.document(engine.model(), &legacy(&off))
    );
}

#[test]
fn v2_output_validates_against_the_json_schema() {
    let params = Params {
        sampling: Sampling::EveryNth(30),
        ..base_params()
    };
    let (out, engine) = run(params.clone());
    let dir = scratch();
    let good = dir.path().join("good.json");
    std::fs::write(&good, out.document(engine.model(), &params)).unwrap();
    // The same document with a frame's index removed must fail: the schema constrains.
    let mut v: serde_json::Value =
        serde_json::from_slice(&out.document(engine.model(), &params)).unwrap();
    v["frames"][0].as_object_mut().unwrap().remove("index");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&v).unwrap()).unwrap();
    // Keyframe sampling is recorded as such, and valid too.
    let keyframes = Params {
        sampling: Sampling::Keyframes,
        ..base_params()
    };
    let (kout, kengine) = run(keyframes.clone());
    let kdoc = kout.document(kengine.model(), &keyframes);
    let k: serde_json::Value = serde_json::from_slice(&kdoc).unwrap();
    assert_eq!(k["params"]["sampling"], "keyframes");
    assert!(
        k["frames"][0]["index"] == 0,
        "the first frame is a keyframe"
    );
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, &kdoc).unwrap();
    let check = r#"
import json, sys, jsonschema
schema = json.load(open("src/media/src/schema/v2.schema.json"))
jsonschema.Draft202012Validator.check_schema(schema)
for path in sys.argv[1:]:
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.load(open(path))))
    print(path.rsplit("/", 1)[-1], len(errors))
"#;
    let out = run_python(&[
        "-c",
        check,
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        keys.to_str().unwrap(),
    ]);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("good.json 0"), "{out}");
    assert!(out.contains("keys.json 0"), "{out}");
    assert!(!out.contains("bad.json 0"), "{out}");
}

#[test]
fn bad_model_files_fail_at_start_up_with_clear_errors() {
    let dir = scratch();
    let missing = dir.path().join("nope.pt");
    let e = Model::load(ModelConfig::new(&missing)).unwrap_err();
    assert!(matches!(e, ModelError::NotFound(_)), "{e}");
    assert!(e.to_string().contains("nope.pt"));

    let garbage = dir.path().join("garbage.pt");
    std::fs::write(&garbage, b"this is not a torchscript archive").unwrap();
    let e = Model::load(ModelConfig::new(&garbage)).unwrap_err();
    assert!(matches!(e, ModelError::Load { .. }), "{e}");

    // A valid TorchScript file that is not a detector: forward(Tensor) -> Tensor.
    let wrong = dir.path().join("wrong.pt");
    let script = format!(
        "import torch\nclass M(torch.nn.Module):\n    def forward(self, x: torch.Tensor) -> torch.Tensor:\n        return x * 2\ntorch.jit.script(M()).save({:?})\n",
        wrong.to_str().unwrap()
    );
    // TorchScript needs the source in a file.
    let script_path = dir.path().join("make_wrong.py");
    std::fs::write(&script_path, script).unwrap();
    run_python(&[script_path.to_str().unwrap()]);
    let e = Model::load(ModelConfig::new(&wrong)).unwrap_err();
    assert!(matches!(e, ModelError::Signature { .. }), "{e}");
    assert!(e.to_string().contains("export_model.py"), "{e}");

    let bad_sidecar = dir.path().join("side.pt");
    std::fs::copy(fixture_model(), &bad_sidecar).unwrap();
    std::fs::write(dir.path().join("side.json"), b"{not json").unwrap();
    let e = Model::load(ModelConfig::new(&bad_sidecar)).unwrap_err();
    assert!(matches!(e, ModelError::Sidecar { .. }), "{e}");

    let mut zero = ModelConfig::new(fixture_model());
    zero.batch_size = 0;
    assert!(matches!(Model::load(zero), Err(ModelError::Config(_))));
    let mut cuda = ModelConfig::new(fixture_model());
    cuda.device = vidinfer::model::DeviceChoice::Cuda(0);
    if !tch::Cuda::is_available() {
        assert!(matches!(Model::load(cuda), Err(ModelError::NoCuda(0))));
    }
}

/// The production architecture: torchvision's maskrcnn_resnet50_fpn exported by our
/// script (random weights: the hub is unreachable here) loads and runs through tch.
#[test]
fn exported_resnet50_mask_rcnn_runs_through_the_runtime() {
    let dir = scratch();
    let out_dir = dir.path().join("r50");
    run_python(&[
        "scripts/export_model.py",
        "--out",
        out_dir.to_str().unwrap(),
        "--weights",
        "none",
        "--min-size",
        "320",
        "--max-size",
        "320",
        "--score-thresh",
        "0.0",
        "--detections-per-img",
        "5",
        "--tar",
    ]);
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("model.json")).unwrap()).unwrap();
    let classes = sidecar["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 91);
    assert_eq!(classes[1], "person");
    assert_eq!(classes[12], "N/A");
    assert_eq!(sidecar["input"]["min_size"], 320);
    // SageMaker's layout: model.pt at the root of model.tar.gz.
    let listing = std::process::Command::new("tar")
        .args(["-tzf", out_dir.join("model.tar.gz").to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.lines().any(|l| l == "model.pt"), "{listing}");

    let mut cfg = ModelConfig::new(out_dir.join("model.pt"));
    cfg.batch_size = 2;
    let model = Model::load(cfg).unwrap();
    assert_eq!(model.info().label(1), "person");
    assert_eq!(model.info().label(500), "class_500");
    let img = vidinfer::model::Image {
        width: 320,
        height: 240,
        rgb: vec![90; 320 * 240 * 3],
    };
    let (dets, secs) = model.infer_blocking(vec![img.clone(), img], true).unwrap();
    assert_eq!(dets.len(), 2);
    assert!(secs > 0.0);
    for d in &dets {
        assert_eq!(
            d.len(),
            5,
            "box_detections_per_img=5 with no score threshold"
        );
        for det in d {
            assert!((0..91).contains(&det.label_id));
            assert!(det.bbox[0] <= det.bbox[2] && det.bbox[2] <= 320.0);
            let m = det.mask.as_ref().expect("masks requested");
            assert_eq!(m.bits.len(), (m.width * m.height) as usize);
        }
    }
}

/// Retrains the fixture model from scratch and checks it reaches the committed quality.
/// Slow (about 7 minutes on 2 cores): `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn fixture_training_script_reproduces_a_model_of_the_same_quality() {
    let dir = scratch();
    run_python(&[
        "scripts/train_fixture_model.py",
        "--out",
        dir.path().to_str().unwrap(),
        "--check",
    ]);
    assert!(dir.path().join("model.pt").exists());
}

/// Resuming from saved frames gives the uninterrupted run's document (tracks and masks
/// included); saved frames the video does not give make the job fail with
/// `PipelineError::Resume` (the SQS worker then starts over).
#[test]
fn resuming_from_saved_frames_gives_the_uninterrupted_document() {
    use vidinfer::pipeline::PipelineError;
    let params = Params {
        sampling: Sampling::EveryNth(15),
        ..base_params()
    };
    let (full, engine) = run(params.clone());
    assert_eq!(full.frames.len(), 10);
    let job = || Job {
        source: Source::Path(sample_video()),
        params: params.clone(),
    };
    let rt = runtime();
    let mut seen = Vec::new();
    let resumed = rt
        .block_on(engine.run_from(job(), full.frames[..6].to_vec(), |p, _| {
            seen.push(p.frames_done)
        }))
        .expect("resumes");
    assert_eq!(resumed.stats.frames_resumed, 6);
    // Only the 4 frames after the saved ones went through the model.
    assert_eq!(resumed.stats.frames_sampled, 10);
    assert_eq!(seen.last(), Some(&10));
    assert!(seen.iter().all(|&n| n > 6), "{seen:?}");
    assert_eq!(
        resumed.document(engine.model(), &params),
        full.document(engine.model(), &params),
        "byte-identical document"
    );

    // The last saved frame claims another time than the video gives it.
    let mut forged = full.frames[..6].to_vec();
    forged[5].meta.pts_s += 0.01;
    let e = rt
        .block_on(engine.run_from(job(), forged, |_, _| {}))
        .unwrap_err();
    assert!(matches!(e, PipelineError::Resume(_)), "{e}");
    // A saved box outside its picture.
    let mut forged = full.frames[..6].to_vec();
    let d = forged[2].detections.first_mut().expect("a detection");
    d.bbox[2] = 1e6;
    let e = rt
        .block_on(engine.run_from(job(), forged, |_, _| {}))
        .unwrap_err();
    assert!(e.to_string().contains("outside the picture"), "{e}");
}

/// `resize=model`'s size is the one torchvision's scripted transform gives, for COCO's
/// and other exports' sizes and for the fixture model's own transform, over a grid of
/// picture sizes with odd sides (`scripts/model_sizes.py`).
#[test]
fn model_size_is_the_size_torchvision_resizes_to() {
    let model_path = fixture_model();
    let out = run_python(&[
        "scripts/model_sizes.py",
        "--model",
        model_path.to_str().unwrap(),
    ]);
    let rows: Vec<[u32; 6]> = serde_json::from_slice(&out).unwrap();
    assert!(rows.len() > 500, "{} sizes", rows.len());
    let wrong: Vec<_> = rows
        .iter()
        .filter(|[w, h, min, max, ow, oh]| model_size(*w, *h, *min, *max) != (*ow, *oh))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {}: {wrong:?}",
        wrong.len(),
        rows.len()
    );
}

/// One detection as two runs of the same video can both report it: a label, a score,
/// a box and (v2 with masks) a mask, in coordinates the runs share.
struct Seen {
    label: i64,
    score: f32,
    bbox: [f32; 4],
    mask: Option<Vec<u8>>,
}

/// How the detections of two runs agree, the worse of both directions.
#[derive(Debug)]
struct Agreement {
    /// Detections scoring at least the threshold in either run.
    compared: usize,
    /// Of those, the ones with no detection of the same label in the other run.
    unmatched: usize,
    min_box_iou: f32,
    mean_box_iou: f64,
    max_score_diff: f32,
    min_mask_iou: f64,
}

/// Match every detection of `a` scoring at least `min` to the best-overlapping unused
/// detection of the same label in `b` (any score), frame by frame.
fn agree_one_way(
    a: &[Vec<Seen>],
    b: &[Vec<Seen>],
    min: f32,
    out: &mut Agreement,
    ious: &mut Vec<f32>,
) {
    assert_eq!(a.len(), b.len(), "the same frames");
    for (fa, fb) in a.iter().zip(b) {
        let mut used = vec![false; fb.len()];
        for d in fa.iter().filter(|d| d.score >= min) {
            out.compared += 1;
            let best = fb
                .iter()
                .enumerate()
                .filter(|(j, e)| !used[*j] && e.label == d.label)
                .map(|(j, e)| (j, box_iou(d.bbox, e.bbox)))
                .max_by(|x, y| x.1.total_cmp(&y.1));
            let Some((j, iou)) = best.filter(|(_, iou)| *iou > 0.0) else {
                out.unmatched += 1;
                continue;
            };
            used[j] = true;
            ious.push(iou);
            out.min_box_iou = out.min_box_iou.min(iou);
            out.max_score_diff = out.max_score_diff.max((d.score - fb[j].score).abs());
            if let (Some(ma), Some(mb)) = (&d.mask, &fb[j].mask) {
                out.min_mask_iou = out.min_mask_iou.min(mask_iou(ma, mb));
            }
        }
    }
}

fn agreement(a: &[Vec<Seen>], b: &[Vec<Seen>], min: f32) -> Agreement {
    let mut out = Agreement {
        compared: 0,
        unmatched: 0,
        min_box_iou: 1.0,
        mean_box_iou: 0.0,
        max_score_diff: 0.0,
        min_mask_iou: 1.0,
    };
    let mut ious = Vec::new();
    agree_one_way(a, b, min, &mut out, &mut ious);
    agree_one_way(b, a, min, &mut out, &mut ious);
    out.mean_box_iou = mean(&ious);
    out
}

fn seen_v2(doc: &V2Output) -> Vec<Vec<Seen>> {
    doc.frames
        .iter()
        .map(|f| {
            f.detections
                .iter()
                .map(|d| Seen {
                    label: d.label_id,
                    score: d.score,
                    bbox: d.bbox,
                    mask: d.mask.as_ref().map(|m| m.decode()),
                })
                .collect()
        })
        .collect()
}

fn seen_legacy(bytes: &[u8]) -> Vec<Vec<Seen>> {
    let Predictions::Legacy(frames) = Predictions::parse(bytes).unwrap() else {
        panic!("expected the legacy array");
    };
    frames
        .iter()
        .map(|f| {
            (0..f.boxes.len())
                .map(|i| Seen {
                    label: f.labels[i],
                    score: f.scores[i],
                    bbox: f.boxes[i],
                    mask: None,
                })
                .collect()
        })
        .collect()
}

/// A job's parameters from custom attributes, through the one validator.
fn attrs(a: &str) -> Params {
    Overrides::from_custom_attributes(a)
        .unwrap()
        .apply(&Params::default())
        .unwrap()
}

/// `resize=model` gives the detections of the default paths, in their coordinates, within
/// a tolerance measured here: the legacy array in the stretched 1024x1024 frame (the
/// model now sees that frame at its own 240x240 instead of shrinking 1024x1024 itself),
/// v2 in source pixels with masks (the sample at 960x720, which the default path hands
/// the model whole). Where the default's picture already is the model's size (v2 on the
/// 320x240 sample) the runs are identical.
#[test]
fn resize_model_gives_the_default_paths_detections_within_tolerance() {
    const MIN: f32 = 0.5;
    let sampled = "frame_interval=5;min_score=0.05";

    // v2 on the sample: the fit frame is the model's size already.
    let (fit, _) = run(attrs(&format!("{sampled};masks=true")));
    let (model_v2, _) = run(attrs(&format!("{sampled};masks=true;resize=model")));
    assert_eq!(model_v2.frames[0].meta.width, 320);
    assert_eq!(
        fit.frames, model_v2.frames,
        "identical pictures, identical detections"
    );

    // Legacy: the stretched frame at the model's size, boxes mapped back to 1024x1024.
    let legacy = attrs(&format!("{sampled};format=legacy"));
    let legacy_model = attrs(&format!("{sampled};format=legacy;resize=model"));
    let (a, engine) = run(legacy.clone());
    let (b, _) = run(legacy_model.clone());
    assert_eq!(
        (a.frames[0].meta.width, a.frames[0].meta.height),
        (1024, 1024)
    );
    assert_eq!(
        (b.frames[0].meta.width, b.frames[0].meta.height),
        (240, 240)
    );
    let doc_a = seen_legacy(&a.document(engine.model(), &legacy));
    let doc_b = seen_legacy(&b.document(engine.model(), &legacy_model));
    let l = agreement(&doc_a, &doc_b, MIN);
    eprintln!("legacy, stretched 1024x1024 vs resize=model (240x240): {l:?}");
    let far = doc_b
        .iter()
        .flatten()
        .flat_map(|d| d.bbox)
        .fold(0f32, f32::max);
    assert!(
        far > 300.0 && far <= 1024.0,
        "boxes in the 1024x1024 frame: {far}"
    );

    // v2 on the sample at 960x720: the default hands the model 960x720 pictures.
    let dir = scratch();
    let big = dir.path().join("big.mp4");
    ffmpeg(&[
        "-i",
        sample_video().to_str().unwrap(),
        "-vf",
        "scale=960:720",
        "-c:v",
        "libx264",
        "-crf",
        "16",
        "-pix_fmt",
        "yuv420p",
        big.to_str().unwrap(),
    ]);
    let fit = attrs(&format!("{sampled};masks=true"));
    let model = attrs(&format!("{sampled};masks=true;resize=model"));
    let (a, engine) = run_on(big.clone(), fit.clone());
    let (b, _) = run_on(big, model.clone());
    let (doc_a, doc_b) = (v2_of(&a, &engine, &fit), v2_of(&b, &engine, &model));
    assert_eq!(
        (doc_a.params.frame_width, doc_a.params.frame_height),
        (960, 720)
    );
    assert_eq!(
        (doc_b.params.frame_width, doc_b.params.frame_height),
        (320, 240)
    );
    let v = agreement(&seen_v2(&doc_a), &seen_v2(&doc_b), MIN);
    eprintln!("v2 at 960x720, fit vs resize=model (320x240): {v:?}");

    // Measured (FFmpeg 5.1, LibTorch 2.13; 210 detections at >= 0.5, both ways): legacy
    // box IoU min 0.904, mean 0.991, score difference at most 0.0032; v2 box IoU min
    // 0.925, mean 0.989, score difference at most 0.0015, mask IoU min 0.939; every
    // detection found both ways. The margins are for other FFmpeg and LibTorch builds;
    // a box mapped to the wrong frame (a ratio missing or applied twice) overlaps
    // nothing of its counterpart.
    for (what, g) in [("legacy", &l), ("v2 960x720", &v)] {
        assert!(g.compared >= 150, "{what}: {g:?}");
        assert_eq!(g.unmatched, 0, "{what}: {g:?}");
        assert!(g.min_box_iou >= 0.85, "{what}: {g:?}");
        assert!(g.mean_box_iou >= 0.97, "{what}: {g:?}");
        assert!(g.max_score_diff <= 0.02, "{what}: {g:?}");
        assert!(g.min_mask_iou >= 0.9, "{what}: {g:?}");
    }
}
