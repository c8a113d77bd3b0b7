"""Synthetic scenes of coloured squares, circles and triangles with exact ground truth.

Shared by the fixture-model trainer (still images) and the sample-video generator
(moving shapes), so the model is tested on exactly the kind of picture it learned.
Each class has its own hue family, jittered per object, on a textured light
background; masks are exact because the shapes are drawn from their geometry.
"""

import math
import random

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["__background__", "square", "circle", "triangle"]
# Base RGB colour of each class (index = label id); objects jitter around it.
BASE_COLOURS = {1: (220, 40, 40), 2: (40, 180, 60), 3: (40, 80, 220)}


def jitter_colour(label, rng):
    return tuple(int(np.clip(c + rng.randint(-35, 35), 0, 255)) for c in BASE_COLOURS[label])


def background(width, height, rng):
    """A light, gently textured background so the model cannot key on flat colour."""
    base = np.array([rng.randint(170, 240) for _ in range(3)], dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gx, gy = rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)
    grad = (xx * gx + yy * gy)[..., None]
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 6, (height, width, 1))
    img = np.clip(base + grad + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(img, "RGB")


def shape_polygon(obj):
    """The outline of a square or triangle (circle returns None)."""
    cx, cy, r, angle = obj["cx"], obj["cy"], obj["r"], obj.get("angle", 0.0)
    if obj["label"] == 1:
        n, start = 4, math.pi / 4 + angle
    elif obj["label"] == 3:
        n, start = 3, -math.pi / 2 + angle
    else:
        return None
    return [
        (cx + r * math.cos(start + 2 * math.pi * k / n), cy + r * math.sin(start + 2 * math.pi * k / n))
        for k in range(n)
    ]


def draw(img, obj):
    """Draw one object onto img and return its exact boolean mask."""
    mask = Image.new("L", img.size, 0)
    md = ImageDraw.Draw(mask)
    poly = shape_polygon(obj)
    if poly is None:
        cx, cy, r = obj["cx"], obj["cy"], obj["r"]
        md.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        md.polygon(poly, fill=255)
    img.paste(Image.new("RGB", img.size, obj["colour"]), (0, 0), mask)
    return np.array(mask) > 127


def box_of(mask):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def random_objects(width, height, rng, max_objects=4, r_range=(14, 40)):
    """Non-overlapping objects placed at random."""
    objs = []
    for _ in range(rng.randint(1, max_objects)):
        for _attempt in range(30):
            r = rng.uniform(*r_range)
            cx = rng.uniform(r + 2, width - r - 2)
            cy = rng.uniform(r + 2, height - r - 2)
            if all(math.hypot(cx - o["cx"], cy - o["cy"]) > r + o["r"] + 6 for o in objs):
                label = rng.randint(1, 3)
                objs.append(
                    {
                        "label": label,
                        "cx": cx,
                        "cy": cy,
                        "r": r,
                        "angle": rng.uniform(-0.3, 0.3),
                        "colour": jitter_colour(label, rng),
                    }
                )
                break
    return objs


def render(width, height, objs, rng):
    """Render objects on a background; returns (RGB uint8 array, list of (label, box, mask))."""
    img = background(width, height, rng)
    truth = []
    for obj in objs:
        mask = draw(img, obj)
        box = box_of(mask)
        if box is not None:
            truth.append((obj["label"], box, mask))
    return np.array(img), truth


def rle_encode(mask):
    """COCO uncompressed RLE: column-major run lengths starting with a run of zeros."""
    flat = np.asarray(mask, dtype=np.int8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [len(flat)]])
    counts = np.diff(bounds).tolist()
    if len(flat) and flat[0] == 1:
        counts = [0] + counts
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": [int(c) for c in counts]}
