#!/usr/bin/env python3
"""Run a vidinfer TorchScript model from Python on raw RGB frames: the reference side of
the Rust/Python parity test and of the forward-time benchmark.

Input: a frames file of concatenated records, each `u32 width, u32 height` (little
endian) followed by width*height*3 bytes of packed RGB24.
Output (stdout): JSON list, one element per frame, {"boxes", "labels", "scores",
"forward_s"}.

  scripts/torchscript_infer.py MODEL.pt FRAMES.bin [--threads N] [--batch N]
"""

import argparse
import json
import struct
import sys
import time

import numpy as np
import torch
import torchvision  # noqa: F401  (registers torchvision::nms, roi_align, ...)


def read_frames(path):
    data = open(path, "rb").read()
    pos, frames = 0, []
    while pos < len(data):
        w, h = struct.unpack_from("<II", data, pos)
        pos += 8
        n = w * h * 3
        rgb = np.frombuffer(data, dtype=np.uint8, count=n, offset=pos).reshape(h, w, 3)
        pos += n
        frames.append(torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0)
    return frames


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("frames")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    p.add_argument("--batch", type=int, default=1, help="frames per forward call (default: 1)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = torch.jit.load(a.model, map_location="cpu").eval()
    frames = read_frames(a.frames)
    out = []
    with torch.no_grad():
        model([frames[0]])  # warm-up, as the Rust runtime does at load
        for i in range(0, len(frames), a.batch):
            batch = frames[i : i + a.batch]
            t = time.perf_counter()
            _, dets = model(batch)
            dt = (time.perf_counter() - t) / len(batch)
            for d in dets:
                out.append({
                    "boxes": d["boxes"].tolist(),
                    "labels": d["labels"].tolist(),
                    "scores": d["scores"].tolist(),
                    "forward_s": dt,
                })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
