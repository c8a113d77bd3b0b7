#!/usr/bin/env python3
"""Structural checks of the infrastructure code (terraform is not installable from the
registries this project can reach, so `terraform validate` cannot run here): parse
docker/terraform/*.tf with python-hcl2 and docker/k8s/*.yaml with PyYAML, and check
what the deployment relies on. Exits non-zero with every problem listed.

  scripts/check_deploy.py [REPO_ROOT]
"""

import json
import pathlib
import re
import sys

import hcl2
import yaml

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
problems = []


def check(cond, what):
    if not cond:
        problems.append(what)


def unquote(v):
    """python-hcl2 keeps HCL's quotes around keys and strings: drop them."""
    if isinstance(v, dict):
        return {unquote(k): unquote(x) for k, x in v.items() if k != "__is_block__"}
    if isinstance(v, list):
        return [unquote(x) for x in v]
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


resources, data, variables = {}, {}, set()
for tf in sorted((root / "docker/terraform").glob("*.tf")):
    doc = unquote(hcl2.load(open(tf)))
    for block in doc.get("resource", []):
        for rtype, named in block.items():
            for name, body in named.items():
                resources[(rtype, name)] = body
    for block in doc.get("data", []):
        for dtype, named in block.items():
            for name, body in named.items():
                data[(dtype, name)] = body
    for block in doc.get("variable", []):
        variables.update(block.keys())

types = {t for t, _ in resources}
for needed in ["aws_s3_bucket", "aws_sqs_queue", "aws_sns_topic", "aws_iam_role", "aws_iam_role_policy",
               "aws_sagemaker_model", "aws_sagemaker_endpoint_configuration", "aws_sagemaker_endpoint",
               "aws_appautoscaling_target", "aws_appautoscaling_policy", "aws_cloudwatch_metric_alarm"]:
    check(needed in types, f"terraform: no {needed}")

jobs = resources.get(("aws_sqs_queue", "jobs"), {})
check("dlq" in str(jobs.get("redrive_policy", "")) and "maxReceiveCount" in str(jobs.get("redrive_policy", "")),
      "terraform: the jobs queue has no redrive policy to the DLQ")

cfg = resources.get(("aws_sagemaker_endpoint_configuration", "vidinfer"), {})
text = json.dumps(cfg)
for key in ["s3_output_path", "s3_failure_path", "success_topic", "error_topic", "max_concurrent_invocations_per_instance"]:
    check(key in text, f"terraform: the endpoint configuration lacks {key}")

target = resources.get(("aws_appautoscaling_target", "endpoint"), {})
check(str(target.get("min_capacity")) == "0", "terraform: the endpoint cannot scale to zero (min_capacity != 0)")
policies = {n: b for (t, n), b in resources.items() if t == "aws_appautoscaling_policy"}
check(any("ApproximateBacklogSizePerInstance" in json.dumps(b) for b in policies.values()),
      "terraform: no target tracking on ApproximateBacklogSizePerInstance")
alarms = [b for (t, _), b in resources.items() if t == "aws_cloudwatch_metric_alarm"]
check(any("HasBacklogWithoutCapacity" in json.dumps(a) and "wake_from_zero" in json.dumps(a) for a in alarms),
      "terraform: no HasBacklogWithoutCapacity alarm driving a step policy (the endpoint would never wake from zero)")

# Least privilege for the standalone worker.
allowed = {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "sqs:ReceiveMessage", "sqs:DeleteMessage",
           "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sns:Publish"}
worker = data.get(("aws_iam_policy_document", "worker"), {})
statements = worker.get("statement", [])
check(statements, "terraform: no worker policy document")
for st in statements:
    actions = set(st.get("actions", []))
    check(actions <= allowed, f"terraform: the worker may do more than it needs: {sorted(actions - allowed)}")
    for res in st.get("resources", []):
        check(res != "*", f"terraform: worker statement {st.get('sid')} applies to every resource")
    if "s3:GetObject" in actions:
        check(all("/input/" in r for r in st["resources"]), "terraform: the worker reads outside the input prefix")
    if "s3:PutObject" in actions:
        check(all("/output/" in r or "/failure/" in r for r in st["resources"]),
              "terraform: the worker writes outside the output/failure prefixes")

docs = [d for y in sorted((root / "docker/k8s").glob("*.yaml")) for d in yaml.safe_load_all(open(y)) if d]
kinds = {d["kind"]: d for d in docs}
check("Deployment" in kinds and "ScaledObject" in kinds, "k8s: a Deployment and a KEDA ScaledObject are needed")
if "ScaledObject" in kinds and "Deployment" in kinds:
    so, dep = kinds["ScaledObject"], kinds["Deployment"]
    check(so["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "k8s: the ScaledObject targets another Deployment")
    trig = so["spec"]["triggers"][0]
    check(trig["type"] == "aws-sqs-queue", "k8s: the trigger is not aws-sqs-queue")
    check(so["spec"].get("minReplicaCount") == 0, "k8s: the worker does not scale to zero")
    check(trig["metadata"].get("activationQueueLength") == "0", "k8s: activation is not at the first message")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    check(c.get("args", [None])[0] == "sqs", "k8s: the container does not run `sqs`")
    env = {e["name"] for e in c.get("env", [])}
    for e in ["VIDINFER_QUEUE_URL", "VIDINFER_OUTPUT_PATH", "VIDINFER_SUCCESS_TOPIC", "VIDINFER_ERROR_TOPIC"]:
        check(e in env, f"k8s: the worker lacks {e}")
    check("VIDINFER_ALLOWED_INPUTS" in env, "k8s: the worker may read any S3 location (set VIDINFER_ALLOWED_INPUTS)")
    sc = c.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
          and sc.get("allowPrivilegeEscalation") is False,
          "k8s: the worker must run as non-root on a read-only root filesystem without privilege escalation")
    grace = dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    drain = int(next((e["value"] for e in c["env"] if e["name"] == "VIDINFER_DRAIN_TIMEOUT"), 30))
    check(grace > drain, "k8s: terminationGracePeriodSeconds must exceed the worker's drain timeout")

dockerfile = (root / "docker/Dockerfile").read_text()
check('ENTRYPOINT ["/opt/vidinfer/bin/vidinfer-worker"]' in dockerfile, "Dockerfile: ENTRYPOINT is not the exec form of the worker")
check("docker/stage-runtime.sh" in dockerfile, "Dockerfile: the runtime layout is not made by docker/stage-runtime.sh")
users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
check(bool(users) and users[-1] not in ("root", "0"), "Dockerfile: the runtime image runs as root")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"deployment files OK: {len(resources)} terraform resources, {len(docs)} k8s objects")
