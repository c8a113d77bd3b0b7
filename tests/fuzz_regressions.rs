//! Replays every saved fuzz input (the seeds and each crash or timeout a fuzzing run
//! found, under `tests/fuzz/{seeds,regressions}/<target>/`) through the same entry
//! points the `cargo fuzz` targets call, so what was fixed once stays fixed.

use std::path::Path;

#[path = "fuzz/entry.rs"]
mod entry;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut n = 0;
    for kind in ["seeds", "regressions"] {
        let dir = root.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|f| f == ".gitkeep") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} broke an invariant", path.display());
            n += 1;
        }
    }
    assert!(n > 0, "no saved inputs for {target}");
}

#[test]
fn request_messages() {
    replay("request", entry::request_message);
}

#[test]
fn custom_attributes() {
    replay("custom_attributes", entry::custom_attributes);
}

#[test]
fn predictions_documents() {
    replay("predictions", entry::predictions);
}

#[test]
fn media() {
    replay("media", entry::media);
}

#[test]
fn tracker() {
    replay("track", entry::track);
}
