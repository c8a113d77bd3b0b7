#!/usr/bin/env python3
"""Render the bundled sample video: coloured shapes moving over a textured background,
with exact per-frame ground truth (class, box, COCO RLE mask) for every frame.

It is the demo's default input and the end-to-end tests' reference: the fixture model
(scripts/train_fixture_model.py) was trained on the same kind of picture.

  scripts/make_sample_video.py --out tests/fixtures/sample/shapes.mp4
writes shapes.mp4 (H.264, x264 defaults incl. B-frames) and shapes.truth.json.
"""

import argparse
import json
import math
import pathlib
import random
import subprocess
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import shapes  # noqa: E402


def trajectories(width, height, rng):
    """One object of each class plus a second square that enters halfway. Each moves in
    a straight line inside its own quadrant of the frame, bouncing off its edges, so
    objects never overlap and every one of them is fully visible in every frame."""
    objs = []
    quadrants = [(0, 0), (1, 0), (0, 1), (1, 1)]
    for (label, r), (qx, qy) in zip([(1, 30), (2, 26), (3, 34), (1, 22)], quadrants):
        x0, x1 = qx * width / 2, (qx + 1) * width / 2
        y0, y1 = qy * height / 2, (qy + 1) * height / 2
        objs.append(
            {
                "label": label,
                "r": r,
                "bounds": (x0, x1, y0, y1),
                "cx": rng.uniform(x0 + r + 3, x1 - r - 3),
                "cy": rng.uniform(y0 + r + 3, y1 - r - 3),
                "vx": rng.choice([-1, 1]) * rng.uniform(1.0, 2.5),
                "vy": rng.choice([-1, 1]) * rng.uniform(0.8, 2.0),
                "angle": 0.0,
                "spin": rng.uniform(-0.02, 0.02),
                "colour": shapes.jitter_colour(label, rng),
            }
        )
    objs[3]["starts"] = 0.5
    return objs


def step(obj):
    x0, x1, y0, y1 = obj["bounds"]
    for axis, v, lo, hi in (("cx", "vx", x0, x1), ("cy", "vy", y0, y1)):
        obj[axis] += obj[v]
        if obj[axis] - obj["r"] < lo + 2 or obj[axis] + obj["r"] > hi - 2:
            obj[v] = -obj[v]
            obj[axis] = min(max(obj[axis], lo + obj["r"] + 2), hi - obj["r"] - 2)
    obj["angle"] += obj["spin"]


def overlaps(a, b):
    return math.hypot(a["cx"] - b["cx"], a["cy"] - b["cy"]) < a["r"] + b["r"] + 2


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="tests/fixtures/sample/shapes.mp4", help="output video path")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)

    rng = random.Random(a.seed)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bg = shapes.background(a.width, a.height, rng)
    objs = trajectories(a.width, a.height, rng)
    enc = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-s", f"{a.width}x{a.height}", "-r", str(a.fps), "-i", "-",
         "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)],
        stdin=subprocess.PIPE,
    )
    frames = []
    for i in range(a.frames):
        img = bg.copy()
        visible = [o for o in objs if i >= o.get("starts", 0) * a.frames]
        # Draw back to front; an object hidden behind another is still listed with its
        # visible part, and one fully hidden is not listed.
        masks = [(o, shapes.draw(img, o)) for o in visible]
        truth = []
        for k, (o, m) in enumerate(masks):
            for _, later in masks[k + 1:]:
                m = m & ~later
            box = shapes.box_of(m)
            if box is None:
                continue
            truth.append({"label_id": o["label"], "label": shapes.CLASSES[o["label"]], "box": box,
                          "occluded": any(overlaps(o, q) for q in visible if q is not o),
                          "mask": shapes.rle_encode(m)})
        enc.stdin.write(np.asarray(img).tobytes())
        frames.append({"index": i, "pts_s": i / a.fps, "objects": truth})
        for o in objs:
            step(o)
    enc.stdin.close()
    if enc.wait() != 0:
        sys.exit("ffmpeg failed")
    meta = {"video": out.name, "width": a.width, "height": a.height, "fps": a.fps, "frames": a.frames,
            "seed": a.seed, "classes": shapes.CLASSES, "truth": frames}
    truth_path = out.with_suffix(".truth.json")
    truth_path.write_text(json.dumps(meta, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) and {truth_path}")


if __name__ == "__main__":
    main()
