#!/usr/bin/env python3
"""Export a torchvision Mask R-CNN as TorchScript for vidinfer.

Writes, into --out:
  model.pt         the scripted model (eval mode), called from Rust with a list of
                   3xHxW float RGB tensors in [0, 1]
  model.json       sidecar: class names, input expectations, export options, versions
  model.tar.gz     (with --tar) SageMaker's layout: model.pt and model.json at the root

Weights: --weights coco downloads torchvision's COCO weights (needs internet access to
PyTorch's download site); --weights PATH loads a local state dict (.pth); --weights none
exports random weights (useful only for plumbing tests).

Examples:
  scripts/export_model.py --out models/coco-r50 --weights coco
  scripts/export_model.py --out models/coco-r50-v2 --arch v2 --weights ~/maskrcnn_v2.pth --tar
  scripts/export_model.py --out /tmp/m --weights coco --min-size 512 --max-size 853 --no-masks
"""

import argparse
import json
import pathlib
import sys
import tarfile

import torch
import torchvision
from torchvision.models.detection import (
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)


def coco_categories():
    """torchvision's 91-slot COCO list (index = label id, with its N/A slots)."""
    return list(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


def drop_masks(model):
    """Turn a Mask R-CNN into its box-only Faster R-CNN part (no mask head at all)."""
    model.roi_heads.mask_roi_pool = None
    model.roi_heads.mask_head = None
    model.roi_heads.mask_predictor = None
    return model


def export(model, out_dir, *, name, architecture, classes, options, tar=False):
    """Script `model` and write model.pt + model.json (+ model.tar.gz) into out_dir."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    scripted = torch.jit.script(model)
    pt = out_dir / "model.pt"
    scripted.save(str(pt))
    transform = model.transform
    sidecar = {
        "name": name,
        "format": "torchscript",
        "architecture": architecture,
        "classes": classes,
        "masks": model.roi_heads.has_mask(),
        "input": {
            "colour": "RGB",
            "dtype": "float32",
            "range": [0.0, 1.0],
            "layout": "list of 3xHxW tensors",
            "min_size": int(transform.min_size[0]),
            "max_size": int(transform.max_size),
        },
        "options": options,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    (out_dir / "model.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    if tar:
        with tarfile.open(out_dir / "model.tar.gz", "w:gz") as t:
            t.add(pt, arcname="model.pt")
            t.add(out_dir / "model.json", arcname="model.json")
    return pt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--arch", choices=["v1", "v2"], default="v1",
                   help="maskrcnn_resnet50_fpn (v1, the legacy model) or _v2 (default: v1)")
    p.add_argument("--weights", default="coco", help="coco | PATH to a .pth state dict | none (default: coco)")
    p.add_argument("--num-classes", type=int, default=91, help="classes incl. background for a custom .pth (default: 91)")
    p.add_argument("--classes", help="JSON file with the class names (default: COCO's 91 slots)")
    p.add_argument("--min-size", type=int, default=800, help="shorter side the model resizes to (default: 800)")
    p.add_argument("--max-size", type=int, default=1333, help="longer side cap (default: 1333)")
    p.add_argument("--score-thresh", type=float, default=0.05, help="box_score_thresh (default: 0.05)")
    p.add_argument("--detections-per-img", type=int, default=100, help="box_detections_per_img (default: 100)")
    p.add_argument("--no-masks", action="store_true", help="export without the mask head (faster)")
    p.add_argument("--tar", action="store_true", help="also write model.tar.gz in SageMaker's layout")
    a = p.parse_args(argv)

    build = maskrcnn_resnet50_fpn if a.arch == "v1" else maskrcnn_resnet50_fpn_v2
    coco = MaskRCNN_ResNet50_FPN_Weights.COCO_V1 if a.arch == "v1" else MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1
    kwargs = dict(
        min_size=a.min_size,
        max_size=a.max_size,
        box_score_thresh=a.score_thresh,
        box_detections_per_img=a.detections_per_img,
    )
    if a.weights == "coco":
        try:
            model = build(weights=coco, **kwargs)
        except Exception as e:  # noqa: BLE001 - explain the usual cause
            sys.exit(f"could not fetch the COCO weights ({e}); download them elsewhere and pass --weights PATH")
        classes = coco_categories()
    else:
        model = build(weights=None, weights_backbone=None, num_classes=a.num_classes, **kwargs)
        if a.weights != "none":
            state = torch.load(a.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        classes = json.loads(pathlib.Path(a.classes).read_text()) if a.classes else coco_categories()
        if len(classes) != a.num_classes:
            sys.exit(f"{len(classes)} class names for {a.num_classes} classes")
    if a.no_masks:
        drop_masks(model)
    name = f"maskrcnn_resnet50_fpn{'' if a.arch == 'v1' else '_v2'}"
    pt = export(model, a.out, name=name, architecture=name, classes=classes,
                options={**kwargs, "weights": a.weights if a.weights in ("coco", "none") else "local", "masks": not a.no_masks},
                tar=a.tar)
    print(f"wrote {pt}")


if __name__ == "__main__":
    main()
