#!/usr/bin/env python3
"""Print the picture sizes torchvision's scripted detector transform resizes to: the
reference side of the `resize=model` size test (tests/model.rs).

For each (min_size, max_size) the scripted GeneralizedRCNNTransform (or, with --model,
that TorchScript model's own `transform` for its sidecar's sizes) is run on blank
pictures over a grid of sizes, odd ones included. Output (stdout): JSON list of
[width, height, min_size, max_size, out_width, out_height].

  scripts/model_sizes.py [--model MODEL.pt]
"""

import argparse
import json
import pathlib

import torch
import torchvision  # noqa: F401  (registers torchvision's operators for --model)
from torchvision.models.detection.transform import GeneralizedRCNNTransform

SIZES = [(800, 1333), (240, 320), (512, 853), (600, 1000)]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def grid():
    common = [(1920, 1080), (1280, 720), (640, 360), (320, 240), (1024, 1024), (1080, 1920),
              (3840, 2160), (4096, 2160), (720, 480), (854, 480), (1366, 768), (7, 5)]
    return common + [(w, h) for w in range(97, 2000, 127) for h in range(89, 1200, 113)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="also use this TorchScript model's own transform")
    a = p.parse_args()
    transforms = [(mn, mx, torch.jit.script(GeneralizedRCNNTransform(mn, mx, MEAN, STD).eval()))
                  for mn, mx in SIZES]
    if a.model:
        side = json.loads(pathlib.Path(a.model).with_suffix(".json").read_text())["input"]
        transforms.append((side["min_size"], side["max_size"], torch.jit.load(a.model).transform))
    out = []
    with torch.no_grad():
        for mn, mx, t in transforms:
            for w, h in grid():
                oh, ow = t([torch.zeros(3, h, w)])[0].image_sizes[0]
                out.append([w, h, mn, mx, ow, oh])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
