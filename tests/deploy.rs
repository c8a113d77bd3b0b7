//! The container and infrastructure files: the Dockerfile's runtime layout performed and
//! run on this machine (no Docker engine here), and structural checks of the terraform
//! and Kubernetes manifests, including that the checks catch what they claim to.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn the_runtime_layout_resolves_every_library_and_runs_inference() {
    let out = Command::new("bash")
        .arg(repo().join("docker/check-layout.sh"))
        .output()
        .expect("run docker/check-layout.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-layout failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("runtime layout OK"), "{stdout}");
}

/// Run scripts/check_deploy.py on a copy of the repository's docker/ tree after
/// `mutate`; returns (passed, output).
fn check_with(mutate: impl FnOnce(&Path)) -> (bool, String) {
    let dir = scratch();
    copy_dir(&repo().join("docker"), &dir.path().join("docker"));
    mutate(dir.path());
    let out = Command::new(venv_python())
        .arg(repo().join("scripts/check_deploy.py"))
        .arg(dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let p = root.join(file);
    let s = std::fs::read_to_string(&p).unwrap();
    assert!(s.contains(from), "{file} has no `{from}`");
    std::fs::write(p, s.replacen(from, to, 1)).unwrap();
}

#[test]
fn deployment_files_pass_and_the_checks_catch_regressions() {
    let (ok, out) = check_with(|_| {});
    assert!(ok, "{out}");
    assert!(out.contains("deployment files OK"));

    let cases: [(&str, &str, &str, &str); 7] = [
        ("docker/Dockerfile", "USER 10001\n", "", "runs as root"),
        (
            "docker/k8s/worker.yaml",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
            "non-root on a read-only root",
        ),
        (
            "docker/terraform/main.tf",
            r#"actions   = ["sns:Publish"]"#,
            r#"actions   = ["sns:Publish", "s3:DeleteObject"]"#,
            "more than it needs",
        ),
        (
            "docker/terraform/sagemaker.tf",
            "min_capacity       = 0",
            "min_capacity       = 1",
            "scale to zero",
        ),
        (
            "docker/terraform/sagemaker.tf",
            "HasBacklogWithoutCapacity\"",
            "CPUUtilization\"",
            "never wake from zero",
        ),
        (
            "docker/k8s/worker.yaml",
            "terminationGracePeriodSeconds: 60",
            "terminationGracePeriodSeconds: 10",
            "drain timeout",
        ),
        (
            "docker/terraform/main.tf",
            "    maxReceiveCount     = var.max_receive_count\n",
            "",
            "redrive",
        ),
    ];
    for (file, from, to, needle) in cases {
        let (ok, out) = check_with(|root| edit(root, file, from, to));
        assert!(!ok, "the check missed: {file}: {from} -> {to}");
        assert!(out.contains(needle), "{needle}: {out}");
    }
}
