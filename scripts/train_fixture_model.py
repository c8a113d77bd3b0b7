#!/usr/bin/env python3
"""Train the small fixture Mask R-CNN on synthetic shapes and export it for vidinfer.

A torchvision `MaskRCNN` with a tiny 5-layer conv backbone (stride 8, one feature map,
anchors 16/32/64) learns squares, circles and triangles (scripts/shapes.py) on 320x240
images, on the CPU in a few minutes, with a fixed seed. It is then evaluated on
held-out images (recall, precision, box and mask IoU at score > 0.5) and exported with
scripts/export_model.py's exporter. The committed result lives in tests/fixtures/model/
so tests never retrain; `--check` reruns training and fails if quality drops below
the thresholds.

  scripts/train_fixture_model.py --out tests/fixtures/model
"""

import argparse
import json
import math
import pathlib
import random
import sys
import time

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign, box_iou

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import shapes  # noqa: E402
from export_model import export  # noqa: E402

WIDTH, HEIGHT = 320, 240
THRESHOLDS = {"recall": 0.95, "precision": 0.9, "mask_iou": 0.8}


def conv_bn(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Sequential):
    """Five conv+BN+ReLU layers, output stride 8, 128 channels."""

    def __init__(self):
        super().__init__(conv_bn(3, 32, 2), conv_bn(32, 64, 2), conv_bn(64, 128, 2), conv_bn(128, 128, 1), conv_bn(128, 128, 1))
        self.out_channels = 128


def build_model():
    n = len(shapes.CLASSES)
    return MaskRCNN(
        TinyBackbone(),
        num_classes=None,
        min_size=HEIGHT,
        max_size=WIDTH,
        rpn_anchor_generator=AnchorGenerator(sizes=((16, 32, 64),), aspect_ratios=((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
        box_head=TwoMLPHead(128 * 7 * 7, 128),
        box_predictor=FastRCNNPredictor(128, n),
        mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2),
        mask_head=MaskRCNNHeads(128, (64, 64), 1),
        mask_predictor=MaskRCNNPredictor(64, 64, n),
        box_detections_per_img=20,
        # Scenes hold at most four objects: far fewer proposals and sampled RoIs than
        # COCO's defaults keep CPU training (RoIAlign's backward above all) fast.
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128,
        box_batch_size_per_image=64,
    )


def sample(rng):
    objs = shapes.random_objects(WIDTH, HEIGHT, rng)
    img, truth = shapes.render(WIDTH, HEIGHT, objs, rng)
    image = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
    target = {
        "boxes": torch.tensor([t[1] for t in truth], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([t[0] for t in truth], dtype=torch.int64),
        "masks": torch.from_numpy(np.stack([t[2] for t in truth])).to(torch.uint8),
    }
    return image, target


def evaluate(model, n, seed):
    rng = random.Random(seed)
    model.eval()
    tp = fp = fn = 0
    box_ious, mask_ious = [], []
    with torch.no_grad():
        for _ in range(n):
            image, target = sample(rng)
            out = model([image])[0]
            keep = out["scores"] > 0.5
            boxes, labels, masks = out["boxes"][keep], out["labels"][keep], out["masks"][keep, 0] > 0.5
            matched = set()
            for gi in range(len(target["labels"])):
                best, best_j = 0.0, -1
                if len(boxes):
                    ious = box_iou(target["boxes"][gi : gi + 1], boxes)[0]
                    for j in range(len(boxes)):
                        if j not in matched and labels[j] == target["labels"][gi] and ious[j] > best:
                            best, best_j = float(ious[j]), j
                if best >= 0.5:
                    tp += 1
                    matched.add(best_j)
                    box_ious.append(best)
                    g = target["masks"][gi].bool()
                    m = masks[best_j]
                    mask_ious.append(float((g & m).sum()) / max(1.0, float((g | m).sum())))
                else:
                    fn += 1
            fp += len(boxes) - len(matched)
    return {
        "recall": tp / max(1, tp + fn),
        "precision": tp / max(1, tp + fp),
        "box_iou": float(np.mean(box_ious)) if box_ious else 0.0,
        "mask_iou": float(np.mean(mask_ious)) if mask_ious else 0.0,
        "images": n,
    }


def train(iterations, batch, seed, log_every=20):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build_model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=1e-4)
    warmup = 20
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, iterations) / iterations)),
    )
    model.train()
    start = time.time()
    for it in range(iterations):
        images, targets = zip(*(sample(rng) for _ in range(batch)))
        losses = model(list(images), list(targets))
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % log_every == 0 or it == iterations - 1:
            parts = " ".join(f"{k[5:]}={v.item():.3f}" for k, v in losses.items())
            print(f"iter {it:4d}/{iterations} loss={loss.item():.3f} {parts} ({time.time() - start:.0f}s)", flush=True)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="tests/fixtures/model", help="output directory (default: tests/fixtures/model)")
    p.add_argument("--iterations", type=int, default=240, help="training iterations (default: 240)")
    p.add_argument("--batch", type=int, default=8, help="images per iteration (default: 8)")
    p.add_argument("--seed", type=int, default=1234, help="random seed (default: 1234)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--eval-images", type=int, default=60, help="held-out images for the quality check (default: 60)")
    p.add_argument("--check", action="store_true", help="exit non-zero if quality is below the thresholds")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    model = train(a.iterations, a.batch, a.seed)
    metrics = evaluate(model, a.eval_images, seed=a.seed + 1)
    print("held-out quality:", json.dumps(metrics))
    options = {"iterations": a.iterations, "batch": a.batch, "seed": a.seed, "eval": metrics,
               "min_size": HEIGHT, "max_size": WIDTH, "box_detections_per_img": 20}
    pt = export(model, a.out, name="shapes-maskrcnn-tiny", architecture="MaskRCNN(tiny 5-conv backbone, stride 8)",
                classes=shapes.CLASSES, options=options)
    print(f"wrote {pt} ({pt.stat().st_size / 1e6:.1f} MB)")
    failed = [k for k, v in THRESHOLDS.items() if metrics[k] < v]
    if a.check and failed:
        sys.exit(f"quality below thresholds: {', '.join(f'{k}={metrics[k]:.3f}<{THRESHOLDS[k]}' for k in failed)}")


if __name__ == "__main__":
    main()
