#!/usr/bin/env python3
"""Generate vidinfer's hostile-input corpus: files and request messages that must each
end in their documented failure, never a crash, a hang or a read of anything else.

  scripts/hostile_corpus.py OUTDIR [--loopback-port N]

Writes OUTDIR/<case> files and OUTDIR/manifest.json:
  {"media": [{"name", "file", "what", "expect": [class, ...]}],
   "messages": [{"name", "body", "what", "reason"}]}

Media outcome classes (what `run` prints, what `serve` answers, what `sqs` notifies):
  empty         VideoError::Empty              run exit 1 | 400 | Failed, "empty"
  unrecognized  VideoError::Unrecognized       run exit 1 | 415 | Failed, "not a video container"
  no-video      VideoError::NoVideoStream      run exit 1 | 415 | Failed, "no video stream"
  too-large     ResolutionTooLarge/TooLong/TooManyFrames
                                               run exit 1 | 413 | Failed, "limit"
  damaged       VideoError::Corrupt/NoFrames   run exit 1 | 400 | Failed, "damaged"/"no decodable"
  ok            decodes (what is readable)     run exit 0 | 200 | Completed
A case lists every class it may end in (a truncated file may fail at open or while
decoding, depending on where the cut falls); the tests accept exactly those.

Message cases are SQS bodies; `reason` is a phrase the failure notification must carry.
Generation uses only the ffmpeg CLI and Python; it is deterministic (seeded noise).
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys


def ffmpeg(*args):
    # -nostdin: ffmpeg otherwise reads keys from a terminal it inherits (a test run from
    # a shell) and can sit in its interactive prompt.
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def noise(n, seed):
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(n))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir")
    p.add_argument("--loopback-port", type=int, default=9, help="port named by the URL cases (default 9, discard)")
    a = p.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        raise SystemExit("the ffmpeg CLI is missing (scripts/setup.sh installs it)")
    out = a.outdir
    os.makedirs(out, exist_ok=True)
    media = []

    def case(name, what, expect, data=None):
        path = os.path.join(out, name)
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
        media.append({"name": name, "file": path, "what": what, "expect": expect})
        return path

    good = os.path.join(out, "_good.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", good)
    fast = os.path.join(out, "_fast.mp4")
    ffmpeg("-i", good, "-c", "copy", "-movflags", "+faststart", fast)
    good_bytes = open(good, "rb").read()
    fast_bytes = open(fast, "rb").read()

    case("zero-bytes.mp4", "an empty object", ["empty"], b"")
    case("random.mp4", "200 KB of noise with a video name", ["unrecognized"], noise(200_000, 1))
    case("random-small.bin", "16 bytes of noise", ["unrecognized", "empty"], noise(16, 2))
    for cut in (16, 1000, len(good_bytes) // 2):
        case(f"truncated-{cut}.mp4", f"an MP4 (index at the end) cut after {cut} bytes",
             ["unrecognized", "damaged"], good_bytes[:cut])
    for frac in (30, 60, 90):
        case(f"faststart-cut-{frac}.mp4", f"an MP4 with the index first, cut at {frac}%",
             ["ok", "damaged"], fast_bytes[: len(fast_bytes) * frac // 100])
    corrupt = bytearray(fast_bytes)
    mid = len(corrupt) // 2
    corrupt[mid : mid + len(corrupt) // 5] = noise(len(corrupt) // 5, 3)
    case("corrupt-middle.mp4", "a valid MP4 with its middle fifth overwritten by noise",
         ["ok", "damaged"], bytes(corrupt))
    header_noise = bytearray(fast_bytes)
    header_noise[8:4096] = noise(4088, 4)
    case("corrupt-header.mp4", "a valid MP4 with its header overwritten by noise",
         ["unrecognized", "damaged"], bytes(header_noise))

    audio = case("audio-only.m4a", "an AAC audio file, no video", ["no-video"])
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", audio)
    png = case("still.png", "a PNG image", ["unrecognized"])
    ffmpeg("-f", "lavfi", "-i", "color=red:size=64x64", "-frames:v", "1", png)
    jpg = case("still.jpg", "a JPEG image", ["unrecognized"])
    ffmpeg("-f", "lavfi", "-i", "color=red:size=64x64", "-frames:v", "1", jpg)
    pattern = case("frame%03d.jpg", "a JPEG named like an image2 sequence pattern", ["unrecognized"])
    shutil.copy(jpg, pattern)
    case("request.json", "a JSON document", ["unrecognized"], b'{"inputLocation": "s3://bucket/video.mp4"}')
    case("text.txt", "plain text", ["unrecognized"], b"hello, this is not a video\n" * 100)

    wide = case("huge-width.mp4", "8200x64 pixels: wider than the 7680 limit", ["too-large"])
    ffmpeg("-f", "lavfi", "-i", "color=blue:size=8200x64:rate=1", "-frames:v", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", wide)
    tall = case("huge-height.mkv", "64x4400 pixels: taller than the 4320 limit", ["too-large"])
    ffmpeg("-f", "lavfi", "-i", "color=blue:size=64x4400:rate=1", "-frames:v", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", tall)
    slow = case("absurd-slow-fps.mkv", "3 frames at 1 frame per 10000 s: lasts over 5 h", ["too-large"])
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=1", "-frames:v", "3", "-vf", "setpts=N*10000/TB", "-fps_mode", "passthrough", "-c:v", "libx264", slow)
    jump = case("timestamp-jump.mkv", "timestamps jump 10 hours ahead mid-stream", ["too-large"])
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10", "-frames:v", "20", "-vf", "setpts=if(gte(N\\,10)\\,PTS+36000/TB\\,PTS)", "-fps_mode", "passthrough", "-c:v", "libx264", jump)
    fast_fps = case("absurd-fast-fps.mkv", "50 frames at 100000 fps (0.5 ms of video)", ["ok"])
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=100000", "-frames:v", "50", "-c:v", "libx264", fast_fps)

    # Inputs that name other resources: each names a real video on this machine, or a
    # loopback URL, and must be refused without either being opened.
    url = f"http://127.0.0.1:{a.loopback_port}/video.mp4"
    case("local.m3u8", "an HLS playlist naming a local video", ["unrecognized"],
         f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{good}\n#EXT-X-ENDLIST\n".encode())
    case("loopback.m3u8", "an HLS playlist naming a loopback URL", ["unrecognized"],
         f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{url}\n#EXT-X-ENDLIST\n".encode())
    case("concat.txt", "an ffconcat script naming a local video", ["unrecognized"],
         f"ffconcat version 1.0\nfile '{good}'\n".encode())
    case("passwd.ffconcat", "an ffconcat script naming /etc/passwd", ["unrecognized"],
         b"ffconcat version 1.0\nfile '/etc/passwd'\n")
    case("loopback.ffconcat", "an ffconcat script naming a loopback URL", ["unrecognized"],
         f"ffconcat version 1.0\nfile '{url}'\n".encode())
    case("local.mpd", "a DASH manifest naming a local video", ["unrecognized"],
         ('<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
          'mediaPresentationDuration="PT2S"><Period><AdaptationSet mimeType="video/mp4"><Representation '
          f'id="1" bandwidth="1000"><BaseURL>file://{good}</BaseURL></Representation></AdaptationSet>'
          '</Period></MPD>').encode())
    case("loopback.sdp", "an SDP description naming a loopback RTP port", ["unrecognized"],
         (f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
          f"m=video {a.loopback_port} RTP/AVP 96\na=rtpmap:96 H264/90000\n").encode())

    big = "x" * (70 * 1024)
    messages = [
        {"name": "not-json", "body": "this is not JSON", "what": "plain text", "reason": "not a JSON request object"},
        {"name": "json-array", "body": "[1, 2, 3]", "what": "a JSON array", "reason": "not a JSON request object"},
        {"name": "empty-object", "body": "{}", "what": "no inputLocation", "reason": "no inputLocation"},
        {"name": "http-input", "body": json.dumps({"inputLocation": url}), "what": "an http URL as input",
         "reason": "s3://"},
        {"name": "file-input", "body": json.dumps({"inputLocation": "file:///etc/passwd"}), "what": "a file URL as input",
         "reason": "s3://"},
        {"name": "bad-bucket", "body": json.dumps({"inputLocation": "s3://../etc/passwd"}), "what": "an invalid bucket name",
         "reason": "bucket name"},
        {"name": "path-id", "body": json.dumps({"inputLocation": "s3://vidinfer-in/v.mp4", "inferenceId": "../../escape"}),
         "what": "an inferenceId with a path", "reason": "inferenceId"},
        {"name": "oversized", "body": json.dumps({"inputLocation": "s3://vidinfer-in/v.mp4", "pad": big}),
         "what": "a 70 KB message", "reason": "over the limit"},
        {"name": "big-attributes", "body": json.dumps({"inputLocation": "s3://vidinfer-in/v.mp4", "customAttributes": "a=" + "1" * 2000}),
         "what": "2 KB of customAttributes", "reason": "customAttributes"},
        {"name": "bad-attributes", "body": json.dumps({"inputLocation": "s3://vidinfer-in/v.mp4", "customAttributes": "frame_interval=-3"}),
         "what": "a negative frame interval", "reason": "frame_interval"},
    ]
    manifest = {"media": media, "messages": messages}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(media)} media cases and {len(messages)} message cases in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
