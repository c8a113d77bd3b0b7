//! The streaming decoder against real FFmpeg-encoded videos with known content.

mod common;

use std::io::Cursor;
use std::path::Path;

use common::*;
use vidinfer::video::{
    DecodeOptions, Decoder, Frame, Limits, Resize, Sampling, Source, VideoError,
};

fn decode_all(path: &Path, opts: DecodeOptions) -> (Vec<Frame>, u64) {
    let mut dec = Decoder::open(path, opts).expect("open video");
    let mut frames = Vec::new();
    while let Some(f) = dec.next_frame().expect("decode") {
        frames.push(f);
    }
    (frames, dec.frames_decoded())
}

fn every(n: u32) -> DecodeOptions {
    DecodeOptions {
        sampling: Sampling::EveryNth(n),
        resize: Resize::Original,
        ..Default::default()
    }
}

/// Indices are 0, n, 2n…; each frame shows the content painted for its index; its
/// timestamp is index / fps.
fn assert_sampled_correctly(frames: &[Frame], total: u64, n: u64, fps: f64, rotation: u32) {
    let expected: Vec<u64> = (0..total).step_by(n as usize).collect();
    let got: Vec<u64> = frames.iter().map(|f| f.meta.index).collect();
    assert_eq!(got, expected, "kept indices");
    for f in frames {
        assert_eq!(
            read_code(f, rotation),
            f.meta.index,
            "painted code of frame {}",
            f.meta.index
        );
        let c = read_colour(f, rotation);
        assert!(
            colour_close(c, frame_colour(f.meta.index), 12),
            "frame {} colour {c:?} != {:?}",
            f.meta.index,
            frame_colour(f.meta.index)
        );
        assert!(
            (f.meta.pts_s - f.meta.index as f64 / fps).abs() < 1e-3,
            "frame {} pts {} != {}",
            f.meta.index,
            f.meta.pts_s,
            f.meta.index as f64 / fps
        );
    }
}

#[test]
fn h264_with_b_frames_every_nth_is_exact() {
    let dir = scratch();
    let path = make_video(dir.path(), &VideoSpec::h264(320, 240, 100));
    let (frames, _) = decode_all(&path, every(7));
    assert_sampled_correctly(&frames, 100, 7, 25.0, 0);
    let info = vidinfer::video::probe(path.as_path()).unwrap();
    assert_eq!(info.codec, "h264");
    assert_eq!((info.width, info.height), (320, 240));
    assert_eq!(info.frames, Some(100));
    assert!((info.fps.unwrap() - 25.0).abs() < 1e-9);
    assert!((info.duration_s.unwrap() - 4.0).abs() < 0.05);
}

/// Skipping non-reference frames must not change a single kept pixel, and must
/// actually skip work (fewer pictures come out of the decoder).
#[test]
fn skipping_non_reference_frames_keeps_kept_frames_bit_identical() {
    let dir = scratch();
    let specs = [
        VideoSpec::h264(320, 240, 120),
        VideoSpec::h264(320, 240, 120).with(
            "hevc.mp4",
            &[
                "-c:v",
                "libx265",
                "-preset",
                "fast",
                "-x265-params",
                "log-level=error:bframes=4",
                "-crf",
                "18",
            ],
        ),
    ];
    for spec in specs {
        let path = make_video(dir.path(), &spec);
        for n in [1, 2, 5, 30] {
            let full = DecodeOptions {
                skip_non_ref: false,
                ..every(n)
            };
            let (a, decoded_full) = decode_all(&path, full);
            let (b, decoded_skip) = decode_all(&path, every(n));
            assert_eq!(a.len(), b.len(), "{}: n={n}", spec.name);
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.meta.index, y.meta.index);
                assert_eq!(x.meta.pts_s, y.meta.pts_s);
                assert!(
                    x.rgb == y.rgb,
                    "{}: frame {} differs",
                    spec.name,
                    x.meta.index
                );
            }
            assert_eq!(
                decoded_full, 120,
                "{}: a full decode sees every frame",
                spec.name
            );
            if n >= 5 {
                assert!(
                    decoded_skip < decoded_full,
                    "{}: n={n} skipping decoded {decoded_skip} of {decoded_full}",
                    spec.name
                );
            }
            assert_sampled_correctly(&b, 120, n as u64, 25.0, 0);
        }
    }
}

#[test]
fn codecs_decode_with_exact_indices() {
    let dir = scratch();
    let mut cases = vec![
        (
            "hevc.mp4",
            "libx265",
            args(&[
                "-c:v",
                "libx265",
                "-preset",
                "fast",
                "-x265-params",
                "log-level=error",
                "-crf",
                "18",
            ]),
        ),
        (
            "vp9.webm",
            "libvpx-vp9",
            args(&[
                "-c:v",
                "libvpx-vp9",
                "-b:v",
                "0",
                "-crf",
                "20",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
            ]),
        ),
        (
            "mpeg4.avi",
            "mpeg4",
            args(&["-c:v", "mpeg4", "-q:v", "2", "-bf", "2"]),
        ),
        ("mpeg4.mkv", "mpeg4", args(&["-c:v", "mpeg4", "-q:v", "2"])),
    ];
    if has_encoder("libsvtav1") {
        cases.push((
            "av1.mkv",
            "libsvtav1",
            args(&["-c:v", "libsvtav1", "-preset", "12", "-crf", "25"]),
        ));
    } else if has_encoder("libaom-av1") {
        cases.push((
            "av1.mkv",
            "libaom-av1",
            args(&["-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "25"]),
        ));
    }
    for (name, encoder, encode) in cases {
        if !has_encoder(encoder) {
            eprintln!("skipping {name}: this FFmpeg has no {encoder} encoder");
            continue;
        }
        let spec = VideoSpec {
            name: name.into(),
            encode,
            ..VideoSpec::h264(320, 240, 60)
        };
        let path = make_video(dir.path(), &spec);
        let (frames, _) = decode_all(&path, every(4));
        assert_sampled_correctly(&frames, 60, 4, 25.0, 0);
    }
}

#[test]
fn resize_fit_and_stretch_report_scale_factors() {
    let dir = scratch();
    let path = make_video(dir.path(), &VideoSpec::h264(1280, 720, 31));
    let (fit, _) = decode_all(
        &path,
        DecodeOptions {
            resize: Resize::default(),
            ..every(30)
        },
    );
    assert_eq!(fit.len(), 2);
    let f = &fit[0];
    assert_eq!((f.meta.width, f.meta.height), (1024, 576));
    assert!((f.meta.scale_x - 1.25).abs() < 1e-9 && (f.meta.scale_y - 1.25).abs() < 1e-9);
    assert_eq!(f.rgb.len(), 1024 * 576 * 3);
    assert_eq!(read_code(f, 0), 0);
    assert_eq!(read_code(&fit[1], 0), 30);

    let (stretch, _) = decode_all(
        &path,
        DecodeOptions {
            resize: Resize::Stretch {
                width: 1024,
                height: 1024,
            },
            ..every(30)
        },
    );
    let s = &stretch[1];
    assert_eq!((s.meta.width, s.meta.height), (1024, 1024));
    assert!((s.meta.scale_x - 1.25).abs() < 1e-9);
    assert!((s.meta.scale_y - 720.0 / 1024.0).abs() < 1e-9);
    assert_eq!(read_code(s, 0), 30);
    assert!(colour_close(read_colour(s, 0), frame_colour(30), 12));
}

#[test]
fn odd_sizes_and_ten_bit_pixels() {
    let dir = scratch();
    let odd = VideoSpec {
        width: 321,
        height: 241,
        ..VideoSpec::h264(321, 241, 40)
    }
    .with(
        "odd.mp4",
        &["-c:v", "libx264", "-crf", "16", "-pix_fmt", "yuv444p"],
    );
    let path = make_video(dir.path(), &odd);
    let (frames, _) = decode_all(&path, every(3));
    assert_eq!((frames[0].meta.width, frames[0].meta.height), (321, 241));
    assert_sampled_correctly(&frames, 40, 3, 25.0, 0);

    let ten = VideoSpec::h264(320, 240, 40).with(
        "ten.mp4",
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error",
            "-crf",
            "18",
            "-pix_fmt",
            "yuv420p10le",
        ],
    );
    let path = make_video(dir.path(), &ten);
    let dec = Decoder::open(path.as_path(), every(3)).unwrap();
    assert_eq!(dec.info().pixel_format, "yuv420p10le");
    let (frames, _) = decode_all(&path, every(3));
    assert_sampled_correctly(&frames, 40, 3, 25.0, 0);
}

/// Rotation metadata is applied exactly as FFmpeg's own command line applies it.
#[test]
fn rotation_metadata_is_applied() {
    let dir = scratch();
    let plain = make_video(dir.path(), &VideoSpec::h264(320, 240, 20));
    let mut seen = Vec::new();
    for tag in [90u32, 180, 270] {
        let rotated = dir.path().join(format!("rot{tag}.mp4"));
        ffmpeg(&[
            "-i",
            plain.to_str().unwrap(),
            "-c",
            "copy",
            "-metadata:s:v:0",
            &format!("rotate={tag}"),
            rotated.to_str().unwrap(),
        ]);
        let (cli_w, cli_h, cli_rgb) = ffmpeg_first_frame(&rotated);
        let dec = Decoder::open(rotated.as_path(), every(5)).unwrap();
        let rotation = dec.info().rotation;
        seen.push(rotation);
        assert_eq!((dec.info().width, dec.info().height), (cli_w, cli_h));
        let (frames, _) = decode_all(&rotated, every(5));
        let f = &frames[0];
        assert_eq!((f.meta.width, f.meta.height), (cli_w, cli_h), "tag {tag}");
        let diff: u64 = f
            .rgb
            .iter()
            .zip(&cli_rgb)
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = diff as f64 / f.rgb.len() as f64;
        assert!(
            mean < 4.0,
            "tag {tag}: mean pixel difference {mean} from ffmpeg's picture"
        );
        assert_sampled_correctly(&frames, 20, 5, 25.0, rotation);
    }
    seen.sort();
    assert_eq!(seen, vec![90, 180, 270]);
}

#[test]
fn fps_sampling_follows_timestamps_on_variable_frame_rate() {
    let dir = scratch();
    let cfr = make_video(dir.path(), &VideoSpec::h264(320, 240, 100));
    // Frames 0-49 every 40 ms, frames 50-99 every 80 ms.
    let vfr = dir.path().join("vfr.mkv");
    ffmpeg(&[
        "-i",
        cfr.to_str().unwrap(),
        "-vf",
        "setpts='(N+if(gte(N,50),N-50,0))/25/TB'",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-crf",
        "16",
        vfr.to_str().unwrap(),
    ]);
    let pts_of = |i: u64| (i + i.saturating_sub(50)) as f64 / 25.0;
    let fps = 2.0;
    let mut last_slot = -1i64;
    let mut expected = Vec::new();
    for i in 0..100 {
        let slot = (pts_of(i) * fps + 1e-6).floor() as i64;
        if slot > last_slot {
            expected.push(i);
            last_slot = slot;
        }
    }
    let (frames, _) = decode_all(
        &vfr,
        DecodeOptions {
            sampling: Sampling::Fps(fps),
            resize: Resize::Original,
            ..Default::default()
        },
    );
    let got: Vec<u64> = frames.iter().map(|f| f.meta.index).collect();
    assert_eq!(got, expected);
    for f in &frames {
        assert_eq!(read_code(f, 0), f.meta.index);
        assert!(
            (f.meta.pts_s - pts_of(f.meta.index)).abs() < 2e-3,
            "frame {} at {}",
            f.meta.index,
            f.meta.pts_s
        );
    }
}

#[test]
fn reader_source_matches_path_source() {
    let dir = scratch();
    let path = make_video(dir.path(), &VideoSpec::h264(320, 240, 50));
    let (from_path, _) = decode_all(&path, every(10));
    let bytes = std::fs::read(&path).unwrap();
    let mut dec = Decoder::open(Source::Reader(Box::new(Cursor::new(bytes))), every(10)).unwrap();
    let from_reader: Vec<Frame> = dec.by_ref().map(|f| f.unwrap()).collect();
    assert_eq!(from_path, from_reader);
}

/// The presentation indices of the frames ffprobe flags `key_frame`, decoding every
/// frame, and how many frames there are.
fn ffprobe_keyframes(path: &Path) -> (Vec<u64>, u64) {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["frame=key_frame", "-of", "csv=p=0"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe {}", path.display());
    let flags: Vec<bool> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().starts_with('1'))
        .collect();
    let keys = (0..flags.len() as u64)
        .filter(|&i| flags[i as usize])
        .collect();
    (keys, flags.len() as u64)
}

/// Keyframe sampling keeps exactly the frames ffprobe flags as keyframes, at their
/// true presentation indices (the painted code says which frame each one shows), and
/// the decoder produces nothing else where timestamps give the indices. GOPs: forced
/// IDRs at irregular places with B-frames around them (H.264), open GOPs whose CRA
/// pictures have leading pictures shown before them (HEVC), and fixed GOPs in AVI and
/// WebM; a raw H.264 stream and AVI's B-frames have no usable timestamps, so they are
/// counted, which needs a full decode.
#[test]
fn keyframe_sampling_keeps_the_keyframes_ffprobe_reports_at_their_indices() {
    let dir = scratch();
    let keyframes = DecodeOptions {
        sampling: Sampling::Keyframes,
        resize: Resize::Original,
        ..Default::default()
    };
    let h264 = VideoSpec::h264(320, 240, 100).with(
        "forced.mp4",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "16",
            "-pix_fmt",
            "yuv420p",
            "-x264-params",
            "bframes=3:b-adapt=0:b-pyramid=normal:scenecut=0:keyint=1000",
            // Frames 0, 13, 45 and 75 at 25 fps.
            "-force_key_frames",
            "0,0.52,1.8,3.0",
        ],
    );
    // (video, the keyframes asked of the encoder, indices from timestamps, pictures
    // decoded beyond the keyframes: `None` for a full decode).
    let mut cases = vec![(h264.clone(), Some(vec![0, 13, 45, 75]), true, Some(0))];
    cases.push((
        h264.clone().with(
            "raw.h264",
            &[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-x264-params",
                "bframes=3:b-adapt=0:scenecut=0:keyint=30",
                "-f",
                "h264",
            ],
        ),
        None,
        false,
        None,
    ));
    if has_encoder("libx265") {
        cases.push((
            h264.clone().with(
                "open-gop.mp4",
                &[
                    "-c:v",
                    "libx265",
                    "-preset",
                    "fast",
                    "-x265-params",
                    "log-level=error:keyint=24:min-keyint=24:scenecut=0:bframes=4:open-gop=1",
                ],
            ),
            None,
            true,
            Some(0),
        ));
    }
    cases.push((
        h264.clone().with(
            "gop10.avi",
            &["-c:v", "mpeg4", "-q:v", "2", "-bf", "2", "-g", "10"],
        ),
        // FFmpeg's MPEG-4 encoder places its I-frames around the B-frames by itself;
        // AVI's B-frames carry no usable timestamps, so this one is counted too.
        None,
        false,
        None,
    ));
    if has_encoder("libvpx-vp9") {
        cases.push((
            h264.clone().with(
                "gop15.webm",
                &[
                    "-c:v",
                    "libvpx-vp9",
                    "-deadline",
                    "realtime",
                    "-cpu-used",
                    "8",
                    "-g",
                    "15",
                    "-keyint_min",
                    "15",
                ],
            ),
            Some((0..100).step_by(15).collect()),
            true,
            // FFmpeg's VP9 decoder ignores skip_frame; the packets' key flags suffice.
            Some(0),
        ));
    }
    for (spec, planned, exact, extra) in cases {
        let path = make_video(dir.path(), &spec);
        let (expected, total) = ffprobe_keyframes(&path);
        assert_eq!(total, 100, "{}", spec.name);
        if let Some(planned) = planned {
            assert_eq!(
                expected, planned,
                "{}: the GOP asked of the encoder",
                spec.name
            );
        }
        assert!(expected.len() >= 4, "{}: {expected:?}", spec.name);
        let mut dec = Decoder::open(path.as_path(), keyframes.clone()).unwrap();
        let mut frames = Vec::new();
        while let Some(f) = dec.next_frame().unwrap() {
            frames.push(f);
        }
        let got: Vec<u64> = frames.iter().map(|f| f.meta.index).collect();
        assert_eq!(got, expected, "{}: kept indices", spec.name);
        for f in &frames {
            assert_eq!(read_code(f, 0), f.meta.index, "{}", spec.name);
            assert!(
                (f.meta.pts_s - f.meta.index as f64 / 25.0).abs() < 1e-3,
                "{}: frame {} at {}",
                spec.name,
                f.meta.index,
                f.meta.pts_s
            );
        }
        assert_eq!(dec.indices_from_timestamps(), exact, "{}", spec.name);
        let decoded = dec.frames_decoded();
        match extra {
            Some(extra) => assert!(
                decoded >= expected.len() as u64 && decoded <= expected.len() as u64 + extra,
                "{}: {decoded} pictures decoded for {} keyframes",
                spec.name,
                expected.len()
            ),
            None => assert_eq!(decoded, total, "{}: counted", spec.name),
        }
    }
}

fn open_err(path: &Path, opts: DecodeOptions) -> VideoError {
    match Decoder::open(path, opts) {
        Err(e) => e,
        Ok(mut dec) => loop {
            match dec.next_frame() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{} decoded without error", path.display()),
                Err(e) => break e,
            }
        },
    }
}

#[test]
fn hostile_inputs_give_typed_errors() {
    let dir = scratch();
    let d = dir.path();
    let good = make_video(d, &VideoSpec::h264(320, 240, 50));

    let empty = d.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(open_err(&empty, every(1)), VideoError::Empty));

    let random = d.join("random.mp4");
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&random, &noise).unwrap();
    assert!(matches!(
        open_err(&random, every(1)),
        VideoError::Unrecognized { .. }
    ));

    // Truncated: the index (moov) is at the end, so the first half is unreadable.
    let bytes = std::fs::read(&good).unwrap();
    for cut in [16, 1000, bytes.len() / 2] {
        let t = d.join(format!("trunc{cut}.mp4"));
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let e = open_err(&t, every(1));
        assert!(
            matches!(
                e,
                VideoError::Unrecognized { .. } | VideoError::Corrupt { .. } | VideoError::NoFrames
            ),
            "cut at {cut}: {e:?}"
        );
    }
    // Index first, data cut short: decodes what is there, then ends cleanly.
    let faststart = d.join("fast.mp4");
    ffmpeg(&[
        "-i",
        good.to_str().unwrap(),
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        faststart.to_str().unwrap(),
    ]);
    let fs = std::fs::read(&faststart).unwrap();
    let cut = d.join("fastcut.mp4");
    std::fs::write(&cut, &fs[..fs.len() * 6 / 10]).unwrap();
    let mut dec = Decoder::open(cut.as_path(), every(1)).unwrap();
    let mut n = 0;
    loop {
        match dec.next_frame() {
            Ok(Some(f)) => {
                assert_eq!(read_code(&f, 0), f.meta.index);
                n += 1;
            }
            Ok(None) => break,
            Err(e) => {
                assert!(matches!(e, VideoError::Corrupt { .. }), "{e:?}");
                break;
            }
        }
    }
    assert!(n > 5 && n < 50, "decoded {n} frames of a cut file");

    let audio = d.join("audio.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        "-c:a",
        "aac",
        audio.to_str().unwrap(),
    ]);
    assert!(
        matches!(open_err(&audio, every(1)), VideoError::NoVideoStream),
        "audio-only"
    );

    let png = d.join("still.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=red:size=64x64",
        "-frames:v",
        "1",
        png.to_str().unwrap(),
    ]);
    assert!(
        matches!(open_err(&png, every(1)), VideoError::Unrecognized { .. }),
        "png"
    );
    let jpg = d.join("still.jpg");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=red:size=64x64",
        "-frames:v",
        "1",
        jpg.to_str().unwrap(),
    ]);
    assert!(
        matches!(open_err(&jpg, every(1)), VideoError::Unrecognized { .. }),
        "jpeg"
    );

    let text = d.join("request.json");
    std::fs::write(&text, br#"{"inputLocation":"s3://bucket/video.mp4"}"#).unwrap();
    assert!(
        matches!(open_err(&text, every(1)), VideoError::Unrecognized { .. }),
        "json"
    );

    let small = Limits {
        max_width: 160,
        max_height: 120,
        ..Limits::default()
    };
    let e = open_err(
        &good,
        DecodeOptions {
            limits: small,
            ..every(1)
        },
    );
    assert!(
        matches!(
            e,
            VideoError::ResolutionTooLarge {
                width: 320,
                height: 240,
                ..
            }
        ),
        "{e:?}"
    );
    let short = Limits {
        max_duration_s: 1.0,
        ..Limits::default()
    };
    let e = open_err(
        &good,
        DecodeOptions {
            limits: short,
            ..every(1)
        },
    );
    assert!(matches!(e, VideoError::TooLong { .. }), "{e:?}");
    let few = Limits {
        max_frames: 10,
        ..Limits::default()
    };
    let e = open_err(
        &good,
        DecodeOptions {
            limits: few,
            ..every(1)
        },
    );
    assert!(matches!(e, VideoError::TooManyFrames { max: 10 }), "{e:?}");
    let budget = Limits {
        max_decoded_pixels: 320 * 240 * 10,
        ..Limits::default()
    };
    let e = open_err(
        &good,
        DecodeOptions {
            limits: budget,
            ..every(1)
        },
    );
    assert!(
        matches!(e, VideoError::OverBudget { max_pixels } if max_pixels == 320 * 240 * 10),
        "{e:?}"
    );

    let e = open_err(
        &good,
        DecodeOptions {
            sampling: Sampling::EveryNth(0),
            ..every(1)
        },
    );
    assert!(matches!(e, VideoError::InvalidOptions(_)), "{e:?}");
    let e = open_err(
        &good,
        DecodeOptions {
            sampling: Sampling::Fps(f64::NAN),
            ..every(1)
        },
    );
    assert!(matches!(e, VideoError::InvalidOptions(_)), "{e:?}");
}

/// Inputs that name other resources must never make FFmpeg open them, even when the
/// named file is a perfectly good video on this machine.
#[test]
fn playlists_and_scripts_cannot_reach_other_files() {
    let dir = scratch();
    let d = dir.path();
    let good = make_video(d, &VideoSpec::h264(320, 240, 30));
    let ts = d.join("seg.ts");
    ffmpeg(&[
        "-i",
        good.to_str().unwrap(),
        "-c",
        "copy",
        ts.to_str().unwrap(),
    ]);
    // The segment on its own is a readable MPEG-TS file.
    assert!(Decoder::open(ts.as_path(), every(1)).is_ok());

    let cases = [
        (
            "local.m3u8",
            format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.2,\n{}\n#EXT-X-ENDLIST\n", ts.display()),
        ),
        (
            "relative.m3u8",
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.2,\nseg.ts\n#EXT-X-ENDLIST\n".to_string(),
        ),
        (
            "loopback.m3u8",
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1.2,\nhttp://127.0.0.1:9/seg.ts\n#EXT-X-ENDLIST\n".to_string(),
        ),
        ("concat.txt", format!("ffconcat version 1.0\nfile '{}'\n", good.display())),
        ("concat.ffconcat", format!("ffconcat version 1.0\nfile 'file:{}'\n", good.display())),
        ("passwd.ffconcat", "ffconcat version 1.0\nfile '/etc/passwd'\n".to_string()),
        (
            "dash.mpd",
            format!(
                "<?xml version=\"1.0\"?><MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\" \
                 mediaPresentationDuration=\"PT1S\"><Period><AdaptationSet><Representation id=\"1\" \
                 bandwidth=\"1000\"><BaseURL>{}</BaseURL></Representation></AdaptationSet></Period></MPD>",
                good.display()
            ),
        ),
        ("sdp.sdp", "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 9 RTP/AVP 96\na=rtpmap:96 H264/90000\n".to_string()),
    ];
    for (name, body) in cases {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        let e = open_err(&p, every(1));
        assert!(
            matches!(e, VideoError::Unrecognized { .. }),
            "{name}: {e:?}"
        );
    }
}

/// A time range gives exactly the frames a full decode gives in that span — same
/// indices, times and pixels — on every codec here, while decoding only from the
/// keyframe at or before its start. A stream whose timestamps cannot place frames after
/// a skip is refused with a reason rather than given wrong indices.
#[test]
fn time_ranges_keep_exactly_the_full_runs_frames_in_the_span() {
    use vidinfer::video::TimeRange;
    let dir = scratch();
    let mut cases = vec![
        (
            "h264-b.mp4",
            "libx264",
            args(&[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-x264-params",
                "keyint=25:min-keyint=25:bframes=3:b-adapt=0:b-pyramid=normal:scenecut=0",
            ]),
        ),
        (
            "hevc.mp4",
            "libx265",
            args(&[
                "-c:v",
                "libx265",
                "-preset",
                "fast",
                "-x265-params",
                "log-level=error:keyint=25:min-keyint=25:scenecut=0:bframes=4",
            ]),
        ),
        (
            "vp9.webm",
            "libvpx-vp9",
            args(&[
                "-c:v",
                "libvpx-vp9",
                "-b:v",
                "0",
                "-crf",
                "30",
                "-g",
                "25",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
            ]),
        ),
        (
            "mpeg4.avi",
            "mpeg4",
            args(&["-c:v", "mpeg4", "-q:v", "3", "-bf", "2", "-g", "25"]),
        ),
        (
            "raw.h264",
            "libx264",
            args(&[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-x264-params",
                "keyint=25:bframes=2:scenecut=0",
                "-f",
                "h264",
            ]),
        ),
    ];
    cases.retain(|(name, encoder, _)| {
        let ok = has_encoder(encoder);
        if !ok {
            eprintln!("skipping {name}: this FFmpeg has no {encoder} encoder");
        }
        ok
    });
    let ranges = [
        TimeRange {
            start_s: 1.3,
            end_s: Some(3.1),
        },
        TimeRange {
            start_s: 2.0,
            end_s: None,
        },
        TimeRange {
            start_s: 0.0,
            end_s: Some(0.5),
        },
    ];
    for (name, _, encode) in cases {
        let spec = VideoSpec {
            name: name.into(),
            encode,
            ..VideoSpec::h264(160, 128, 100)
        };
        let path = make_video(dir.path(), &spec);
        for sampling in [Sampling::EveryNth(2), Sampling::Fps(3.0)] {
            let whole = DecodeOptions {
                sampling,
                ..every(1)
            };
            let mut dec = Decoder::open(path.as_path(), whole.clone()).unwrap();
            let full: Vec<Frame> = dec.by_ref().map(|f| f.unwrap()).collect();
            let (full_decoded, exact) = (dec.frames_decoded(), dec.indices_from_timestamps());
            for range in ranges {
                let opts = DecodeOptions {
                    range,
                    ..whole.clone()
                };
                let mut dec = Decoder::open(path.as_path(), opts).unwrap();
                let mut got = Vec::new();
                let outcome = loop {
                    match dec.next_frame() {
                        Ok(Some(f)) => got.push(f),
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                };
                let what = format!("{name} {sampling:?} {range:?}");
                if let Err(e) = outcome {
                    // The documented refusal, only where timestamps were unusable.
                    assert!(
                        matches!(&e, VideoError::InvalidOptions(m) if m.contains("timestamps")),
                        "{what}: {e}"
                    );
                    assert!(!exact, "{what}: refused on a stream with usable timestamps");
                    continue;
                }
                let want: Vec<&Frame> = full
                    .iter()
                    .filter(|f| range.contains(f.meta.pts_s))
                    .collect();
                assert!(!want.is_empty(), "{what}: the span holds frames");
                assert_eq!(
                    got.iter().map(|f| f.meta).collect::<Vec<_>>(),
                    want.iter().map(|f| f.meta).collect::<Vec<_>>(),
                    "{what}: indices and times"
                );
                for (g, w) in got.iter().zip(&want) {
                    assert!(g.rgb == w.rgb, "{what}: pixels of frame {}", g.meta.index);
                }
                eprintln!(
                    "{what}: {} frames, decoded {} of {full_decoded}, indices from timestamps: {exact}",
                    got.len(),
                    dec.frames_decoded()
                );
                // 1.3 s is frame 32; the keyframe before it is at 25 at the latest.
                if exact && range.start_s >= 1.3 {
                    assert!(
                        dec.frames_decoded() + 20 <= full_decoded,
                        "{what}: decoded {} of {full_decoded}: the start was not skipped to",
                        dec.frames_decoded()
                    );
                }
            }
        }
    }
}

/// A range that starts at or after the video's end is refused when the video opens.
#[test]
fn a_range_past_the_end_is_refused_at_open() {
    use vidinfer::video::TimeRange;
    let dir = scratch();
    let path = make_video(dir.path(), &VideoSpec::h264(160, 128, 50));
    let opts = DecodeOptions {
        range: TimeRange {
            start_s: 2.5,
            end_s: None,
        },
        ..every(1)
    };
    let e = open_err(&path, opts);
    assert!(
        matches!(&e, VideoError::InvalidOptions(m) if m.contains("after the end of the video")),
        "{e}"
    );
}
