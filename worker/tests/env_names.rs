//! The environment names the deployment manifests set are names the worker reads: a
//! misspelt or renamed variable in a manifest would otherwise be ignored in silence.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use vidinfer::cli::ENV_ALIASES;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The environment names `vidinfer-worker <sub> --help` lists, read with no alias set
/// (an alias in this process's environment would replace its name in the help).
fn names_read_by(sub: &str) -> BTreeSet<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidinfer-worker"));
    cmd.args([sub, "--help"]);
    for (name, alias) in ENV_ALIASES {
        cmd.env_remove(name).env_remove(alias);
    }
    let help = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    help.split("[env: ")
        .skip(1)
        .filter_map(|s| s.split(['=', ']']).next())
        .map(str::to_string)
        .collect()
}

/// Every `VIDINFER_*` (and legacy) name in `text` that looks like an assignment.
fn names_set_in(text: &str, pattern: &str) -> BTreeSet<String> {
    text.match_indices(pattern)
        .filter_map(|(i, _)| {
            let rest = &text[i + pattern.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            name.starts_with("VIDINFER_").then_some(name)
        })
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

#[test]
fn options_read_vidinfer_and_their_flag_name() {
    for sub in ["run", "sqs", "serve"] {
        let names = names_read_by(sub);
        assert!(names.len() > 10, "{sub}: {names:?}");
        for name in &names {
            assert!(name.starts_with("VIDINFER_"), "{sub}: {name}");
        }
        for name in ["VIDINFER_FPS", "VIDINFER_FORMAT", "VIDINFER_FRAME_INTERVAL"] {
            assert!(names.contains(name), "{sub} does not read {name}");
        }
    }
}

#[test]
fn the_manifests_set_only_names_the_worker_reads() {
    // Read outside the options: the log filter, the progress interval, where the
    // torchvision operators are.
    let outside = [
        "VIDINFER_LOG",
        "VIDINFER_PROGRESS_S",
        "VIDINFER_TORCHVISION_OPS",
    ];
    let read_by = |sub| {
        let mut all = names_read_by(sub);
        all.extend(outside.map(String::from));
        all
    };
    let sqs = read_by("sqs");
    let k8s = names_set_in(&read("docker/k8s/worker.yaml"), "name: ");
    assert!(k8s.contains("VIDINFER_QUEUE_URL"), "{k8s:?}");
    for name in &k8s {
        assert!(
            sqs.contains(name),
            "docker/k8s/worker.yaml sets {name}, which is not a name sqs reads (see its --help)"
        );
    }
    let serve = read_by("serve");
    let tf = read("docker/terraform/sagemaker.tf");
    let tf_names = names_set_in(&tf, "\n      ");
    assert!(tf_names.contains("VIDINFER_LOG_FORMAT"), "{tf_names:?}");
    for name in &tf_names {
        assert!(
            serve.contains(name),
            "sagemaker.tf sets {name}, which is not a name serve reads (see its --help)"
        );
    }
    let dockerfile = names_set_in(&read("docker/Dockerfile"), "    ");
    for name in &dockerfile {
        assert!(
            serve.contains(name) && sqs.contains(name),
            "the Dockerfile sets {name}: not read by both front doors"
        );
    }
}
