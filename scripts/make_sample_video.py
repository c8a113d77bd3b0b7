#!/usr/bin/env python3
"""Render a sample video: coloured shapes moving over a textured background, with exact
per-frame ground truth (object identity, class, box, COCO RLE mask, visible fraction)
for every frame.

Two scenes, both of the kind of picture the fixture model (scripts/train_fixture_model.py)
was trained on (same classes, colours and sizes):

  shapes  the demo's default input and the end-to-end tests' reference: four objects,
          each bouncing inside its own quadrant, never overlapping.
  crowd   the tracker's test clip: 13 objects over 8 s that enter and leave through the
          frame's edges, cross each other's paths at different speeds, and pass in front
          of and behind each other (partial occlusion, and a brief full occlusion of a
          small circle behind a large square and of a square behind another square).
          Scripted for 320x240; at most 9 objects in a frame.

On the crowd clip the fixture model finds 95% of the objects that are at least half
visible (same class, box IoU >= 0.5, score >= 0.5) with a precision of 0.99; what it
misses is almost all objects overlapping or touching another one, gaps a tracker has
to bridge.

  scripts/make_sample_video.py --out tests/fixtures/sample/shapes.mp4
  scripts/make_sample_video.py --scene crowd --out tests/fixtures/sample/crowd.mp4
write the video (H.264, x264 defaults incl. B-frames, CRF 18) and, next to it,
NAME.truth.json:

  {"video", "width", "height", "fps", "frames", "seed", "scene", "classes",
   "truth": [{"index", "pts_s", "objects": [
       {"id", "label_id", "label", "box", "occluded", "visible", "mask"}, ...]}, ...]}

  id        a stable positive integer per object across frames (the tracking truth)
  box       x1, y1, x2, y2 in pixels of the object's visible part
  occluded  the object is near or overlapping another one (their circumcircles touch)
  visible   visible pixels / pixels of the whole shape: below 1 when nearer objects hide
            part of it or part of it is outside the frame
  mask      COCO uncompressed RLE of the visible part (column-major, starts with zeros)

An object of which no pixel is visible (fully hidden, or outside the frame) is not
listed in that frame.
"""

import argparse
import json
import math
import pathlib
import random
import subprocess
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import shapes  # noqa: E402

SCENES = {
    "shapes": {"out": "tests/fixtures/sample/shapes.mp4", "frames": 150, "seed": 7},
    "crowd": {"out": "tests/fixtures/sample/crowd.mp4", "frames": 200, "seed": 11},
}


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


def shapes_scene(width, height, frames, rng):
    """The quadrant scene, frame by frame: the objects present, back to front."""
    objs = trajectories(width, height, rng)
    for k, o in enumerate(objs):
        o["id"] = k + 1
    for i in range(frames):
        yield [o for o in objs if i >= o.get("starts", 0) * frames]
        for o in objs:
            step(o)


# The crowd scene's script, for 320x240 and 200 frames (25 fps, 8 s). One row per
# object, in order of identity:
#   label, r (circumradius, px), z (larger is nearer), first frame, (cx, cy) there,
#   (vx, vy) px/frame, (ax, ay) px/frame^2
# Sizes are within the fixture model's training range (r 14..40); orientation wobbles
# within +-0.25 rad of upright, which is what it was trained on (+-0.3).
CROWD = [
    # a large square drifting right through the middle for the whole clip: the
    # occluder others pass behind and in front of
    (1, 36, 2, 0, (50, 120), (1.0, 0.0), (0, 0)),
    # a small circle entering from the top, passing fully behind the large square
    # (about 6 frames unseen), leaving through the bottom
    (2, 16, 1, 5, (100, -15), (0.0, 3.0), (0, 0)),
    # a triangle leaving through the top
    (3, 34, 3, 0, (250, 58), (0.5, -1.4), (0, 0)),
    # a square leaving through the left edge
    (1, 30, 0, 0, (62, 40), (-1.1, 0.15), (0, 0)),
    # a circle drifting slowly right along the top for the whole clip
    (2, 28, 0, 0, (180, 48), (0.6, 0.0), (0, 0)),
    # a triangle entering from the right, crossing in front of the large square and
    # leaving through the left edge
    (3, 30, 4, 27, (350, 110), (-3.0, 0.0), (0, 0)),
    # two circles crossing each other head-on along the bottom, the smaller one in
    # front, entering from opposite edges and leaving through them
    (2, 26, 4, 56, (-26, 200), (2.6, -0.1), (0, 0)),
    (2, 20, 5, 56, (346, 190), (-2.6, 0.05), (0, 0)),
    # a small square racing along the top from right to left, accelerating (2 to 6
    # px/frame), passing in front of the slow circle
    (1, 20, 6, 70, (342, 30), (-2.0, 0.2), (-0.05, 0)),
    # a slow triangle rising from the bottom edge
    (3, 24, 7, 150, (230, 266), (0.2, -0.8), (0, 0)),
    # a square entering slowly from the right, passing fully behind the large square
    # (about 5 frames unseen) and coming out on its left
    (1, 24, 1, 51, (348, 125), (-1.5, 0.0), (0, 0)),
    # a small triangle entering from the left, decelerating
    (3, 18, 8, 160, (-18, 65), (3.0, 0.2), (-0.02, 0)),
    # a circle rising slowly from the bottom edge
    (2, 22, 9, 150, (110, 264), (0.0, -1.4), (0, 0)),
]


def crowd_scene(width, height, frames, rng):
    """The crowd scene, frame by frame: the objects present, back to front."""
    objs = []
    for k, (label, r, z, t0, (cx, cy), (vx, vy), (ax, ay)) in enumerate(CROWD):
        objs.append({
            "id": k + 1, "label": label, "r": r, "z": z, "t0": t0, "cx": float(cx), "cy": float(cy),
            "vx": vx, "vy": vy, "ax": ax, "ay": ay,
            "wobble": (rng.uniform(0.1, 0.25), rng.uniform(60, 120), rng.uniform(0, 2 * math.pi)),
            "colour": shapes.jitter_colour(label, rng),
        })
    objs.sort(key=lambda o: (o["z"], o["id"]))
    for i in range(frames):
        active = [o for o in objs if i >= o["t0"]]
        for o in active:
            amp, period, phase = o["wobble"]
            o["angle"] = amp * math.sin(2 * math.pi * i / period + phase)
        yield [o for o in active
               if -o["r"] < o["cx"] < width + o["r"] and -o["r"] < o["cy"] < height + o["r"]]
        for o in active:
            o["vx"] += o["ax"]
            o["vy"] += o["ay"]
            o["cx"] += o["vx"]
            o["cy"] += o["vy"]


def pixels_outside(obj, width, height):
    """Pixels of the shape that fall outside the frame (drawn on a canvas padded beyond
    the frame by more than any object's size)."""
    if obj["r"] + 1 < min(obj["cx"], obj["cy"], width - obj["cx"], height - obj["cy"]):
        return 0
    pad = 64
    canvas = Image.new("RGB", (width + 2 * pad, height + 2 * pad))
    full = shapes.draw(canvas, dict(obj, cx=obj["cx"] + pad, cy=obj["cy"] + pad))
    return int(full.sum()) - int(full[pad:pad + height, pad:pad + width].sum())


def overlaps(a, b):
    return math.hypot(a["cx"] - b["cx"], a["cy"] - b["cy"]) < a["r"] + b["r"] + 2


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", choices=sorted(SCENES), default="shapes", help="which scene (default: shapes)")
    p.add_argument("--out", help="output video path (default: tests/fixtures/sample/SCENE.mp4)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--frames", type=int, help="frames to render (default: shapes 150, crowd 200)")
    p.add_argument("--seed", type=int, help="random seed (default: shapes 7, crowd 11)")
    a = p.parse_args(argv)
    for k, v in SCENES[a.scene].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.scene == "crowd" and (a.width, a.height) != (320, 240):
        p.error("the crowd scene is scripted for 320x240")

    rng = random.Random(a.seed)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bg = shapes.background(a.width, a.height, rng)
    scene = {"shapes": shapes_scene, "crowd": crowd_scene}[a.scene](a.width, a.height, a.frames, rng)
    enc = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-s", f"{a.width}x{a.height}", "-r", str(a.fps), "-i", "-",
         "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)],
        stdin=subprocess.PIPE,
    )
    frames = []
    for i, present in enumerate(scene):
        img = bg.copy()
        # Draw back to front; an object hidden behind another is still listed with its
        # visible part, and one fully hidden is not listed.
        masks = [(o, shapes.draw(img, o)) for o in present]
        truth = []
        for k, (o, m) in enumerate(masks):
            whole = int(m.sum()) + pixels_outside(o, a.width, a.height)
            for _, later in masks[k + 1:]:
                m = m & ~later
            box = shapes.box_of(m)
            if box is None:
                continue
            truth.append({"id": o["id"], "label_id": o["label"], "label": shapes.CLASSES[o["label"]], "box": box,
                          "occluded": any(overlaps(o, q) for q in present if q is not o),
                          "visible": round(int(m.sum()) / whole, 4),
                          "mask": shapes.rle_encode(m)})
        enc.stdin.write(np.asarray(img).tobytes())
        frames.append({"index": i, "pts_s": i / a.fps, "objects": truth})
    enc.stdin.close()
    if enc.wait() != 0:
        sys.exit("ffmpeg failed")
    meta = {"video": out.name, "width": a.width, "height": a.height, "fps": a.fps, "frames": a.frames,
            "seed": a.seed, "scene": a.scene, "classes": shapes.CLASSES, "truth": frames}
    truth_path = out.with_suffix(".truth.json")
    truth_path.write_text(json.dumps(meta, separators=(",", ":")) + "\n")
    ids = {o["id"] for f in frames for o in f["objects"]}
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) and {truth_path} "
          f"({truth_path.stat().st_size / 1e3:.0f} kB, {len(ids)} objects)")


if __name__ == "__main__":
    main()
