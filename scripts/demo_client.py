#!/usr/bin/env python3
"""The client side of the local demo, as a user of the standalone worker would write it
with boto3: create the AWS resources, submit a video, wait for the SageMaker-style
notification, download the result.

  demo_client.py --endpoint URL setup STATE.json
  demo_client.py --endpoint URL submit STATE.json VIDEO OUT.json [--timeout 300]
"""

import argparse
import json
import pathlib
import sys
import time
import uuid

import boto3


def clients(endpoint):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    return boto3.client("s3", **kw), boto3.client("sqs", **kw), boto3.client("sns", **kw)


def setup(endpoint, state_path):
    s3, sqs, sns = clients(endpoint)
    tag = uuid.uuid4().hex[:8]
    bucket = f"vidinfer-demo-{tag}"
    s3.create_bucket(Bucket=bucket)
    dlq = sqs.create_queue(QueueName=f"vidinfer-dlq-{tag}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=f"vidinfer-jobs-{tag}",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})},
    )["QueueUrl"]
    state = {"bucket": bucket, "queue_url": queue, "dlq_url": dlq}
    for name in ("success", "error"):
        topic = sns.create_topic(Name=f"vidinfer-{name}-{tag}")["TopicArn"]
        inbox = sqs.create_queue(QueueName=f"vidinfer-{name}-inbox-{tag}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        state[f"{name}_topic"] = topic
        state[f"{name}_inbox"] = inbox
    pathlib.Path(state_path).write_text(json.dumps(state, indent=2))
    print(f"[demo] created s3://{bucket}, the job queue (+DLQ) and the success/error topics", file=sys.stderr)


def submit(endpoint, state_path, video, out, timeout):
    s3, sqs, _ = clients(endpoint)
    st = json.loads(pathlib.Path(state_path).read_text())
    key = f"videos/{pathlib.Path(video).name}"
    s3.upload_file(video, st["bucket"], key)
    inference_id = f"demo-{uuid.uuid4().hex[:8]}"
    request = {
        "inputLocation": f"s3://{st['bucket']}/{key}",
        "inferenceId": inference_id,
        "contentType": "video/mp4",
        "customAttributes": "frame_interval=5;min_score=0.5;masks=true",
    }
    sqs.send_message(QueueUrl=st["queue_url"], MessageBody=json.dumps(request))
    print(f"[demo] sent request {inference_id} for s3://{st['bucket']}/{key}", file=sys.stderr)
    deadline = time.time() + timeout
    while time.time() < deadline:
        for name in ("success", "error"):
            r = sqs.receive_message(QueueUrl=st[f"{name}_inbox"], MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for m in r.get("Messages", []):
                note = json.loads(json.loads(m["Body"])["Message"])
                sqs.delete_message(QueueUrl=st[f"{name}_inbox"], ReceiptHandle=m["ReceiptHandle"])
                if note.get("inferenceId") != inference_id:
                    continue
                print("[demo] notification:", json.dumps(note, indent=2), file=sys.stderr)
                if note["invocationStatus"] != "Completed":
                    sys.exit(f"[demo] the request failed: {note.get('failureReason')}")
                loc = note["responseParameters"]["outputLocation"]
                bucket, _, okey = loc[len("s3://"):].partition("/")
                s3.download_file(bucket, okey, out)
                print(f"[demo] downloaded {loc} to {out}", file=sys.stderr)
                return
    sys.exit(f"[demo] no notification within {timeout} s")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("state")
    s = sub.add_parser("submit")
    s.add_argument("state")
    s.add_argument("video")
    s.add_argument("out")
    s.add_argument("--timeout", type=float, default=300)
    a = p.parse_args(argv)
    if a.cmd == "setup":
        setup(a.endpoint, a.state)
    else:
        submit(a.endpoint, a.state, a.video, a.out, a.timeout)


if __name__ == "__main__":
    main()
