#!/usr/bin/env python3
"""Make a speed/accuracy variant of a vidinfer TorchScript Mask R-CNN, for the knobs
section of benches/pipeline.rs.

  variant.py MODEL OUT [--min-size N] [--max-size N] [--detections N] [--no-masks]

Writes OUT (a .pt) and its sidecar (OUT with .json: the source's sidecar with
`masks`, `input.min_size`/`input.max_size` updated and the changes listed under
`variant`), then loads OUT back and runs it to prove each change took effect. Prints
one JSON object: {"out", "changes", "checks"}.

--min-size, --max-size and --detections are attributes of the scripted module
(`transform.min_size` is a one-element tuple, `transform.max_size` and
`roi_heads.detections_per_img` ints) that its compiled forward reads at run time, so
they are set on the loaded ScriptModule and saved.

--no-masks cannot be done that way: scripting compiled `roi_heads.has_mask()` to
`return True`, and a ScriptModule refuses to replace a submodule (`mask_roi_pool`,
`mask_head`, `mask_predictor`) with None. The eager model is rebuilt instead, for the
architectures this project exports (the fixture's tiny Mask R-CNN from
scripts/train_fixture_model.py, torchvision's maskrcnn_resnet50_fpn v1/v2 from
scripts/export_model.py), from the ScriptModule's weights and run-time attributes,
without the mask head, and scripted again; its boxes, labels and scores are checked to
equal the source's.
"""

import argparse
import json
import pathlib
import random
import sys

import torch
import torchvision  # noqa: F401  (registers torchvision::nms, roi_align, ...)

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))


def sample_image(width=320, height=240, seed=7):
    """A scene of the fixture's shapes (scripts/shapes.py): real objects to detect."""
    import shapes

    rng = random.Random(seed)
    img, _ = shapes.render(width, height, shapes.random_objects(width, height, rng), rng)
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


def detect(model, image, score_thresh=None):
    """Run `model` on one image; optionally with `roi_heads.score_thresh` overridden."""
    saved = model.roi_heads.score_thresh
    if score_thresh is not None:
        model.roi_heads.score_thresh = score_thresh
    try:
        with torch.no_grad():
            _, dets = model([image])
    finally:
        model.roi_heads.score_thresh = saved
    return dets[0]


def model_size(model, image):
    """(height, width) the model's own transform resizes `image` to. (Its forward
    returns an ImageList, a TorchScript class Python cannot receive; the compiled
    `resize` method is what forward calls.)"""
    with torch.no_grad():
        resized, _ = model.transform.resize(image, None)
    return int(resized.shape[1]), int(resized.shape[2])


def expected_size(h, w, min_size, max_size):
    """torchvision's GeneralizedRCNNTransform rule: shorter side to min_size, longer
    side capped at max_size."""
    scale = min(min_size / min(h, w), max_size / max(h, w))
    return int(h * scale), int(w * scale)


def rebuild_without_masks(scripted, sidecar):
    """The eager equivalent of `scripted` with no mask head, carrying its weights and
    the attributes its forward reads."""
    name = sidecar.get("name", "")
    classes = sidecar.get("classes") or []
    if name == "shapes-maskrcnn-tiny":
        import train_fixture_model

        eager = train_fixture_model.build_model()
    elif name in ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"):
        from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

        build = maskrcnn_resnet50_fpn if name == "maskrcnn_resnet50_fpn" else maskrcnn_resnet50_fpn_v2
        eager = build(weights=None, weights_backbone=None, num_classes=len(classes) or 91)
    else:
        sys.exit(
            f"--no-masks needs the eager architecture, known for shapes-maskrcnn-tiny and "
            f"maskrcnn_resnet50_fpn[_v2]; the sidecar names {name!r}"
        )
    from export_model import drop_masks

    drop_masks(eager)
    state = {k: v for k, v in scripted.state_dict().items() if not k.startswith("roi_heads.mask_")}
    eager.load_state_dict(state, strict=True)
    # Run-time settings live in attributes, not in the state dict.
    for module, attrs in (
        ("transform", ("min_size", "max_size", "image_mean", "image_std")),
        ("rpn", ("_pre_nms_top_n", "_post_nms_top_n", "nms_thresh", "score_thresh", "min_size")),
        ("roi_heads", ("score_thresh", "nms_thresh", "detections_per_img")),
    ):
        for attr in attrs:
            value = getattr(getattr(scripted, module), attr)
            if isinstance(value, list) and attr in ("image_mean", "image_std"):
                value = [float(v) for v in value]
            setattr(getattr(eager, module), attr, value)
    return torch.jit.script(eager.eval())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="source TorchScript file (its sidecar is MODEL with .json)")
    p.add_argument("out", help="variant's TorchScript file (its sidecar is written beside it)")
    p.add_argument("--min-size", type=int, help="shorter side the model resizes to")
    p.add_argument("--max-size", type=int, help="cap on the longer side")
    p.add_argument("--detections", type=int, help="roi_heads.detections_per_img")
    p.add_argument("--no-masks", action="store_true", help="drop the mask head (rebuilds the module)")
    a = p.parse_args(argv)

    src = pathlib.Path(a.model)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    side_src = src.with_suffix(".json")
    sidecar = json.loads(side_src.read_text()) if side_src.exists() else {}
    torch.set_num_threads(1)
    original = torch.jit.load(str(src), map_location="cpu").eval()
    model = torch.jit.load(str(src), map_location="cpu").eval()

    changes = {}
    if a.no_masks:
        model = rebuild_without_masks(model, sidecar)
        changes["masks"] = False
    if a.min_size is not None:
        model.transform.min_size = (a.min_size,)
        changes["min_size"] = a.min_size
    if a.max_size is not None:
        model.transform.max_size = a.max_size
        changes["max_size"] = a.max_size
    if a.detections is not None:
        model.roi_heads.detections_per_img = a.detections
        changes["detections_per_img"] = a.detections
    model.save(str(out))

    sidecar = dict(sidecar)
    sidecar["masks"] = bool(sidecar.get("masks", True)) and not a.no_masks
    inp = dict(sidecar.get("input") or {})
    inp["min_size"] = int(model.transform.min_size[0])
    inp["max_size"] = int(model.transform.max_size)
    sidecar["input"] = inp
    sidecar["variant"] = {"of": str(src), **changes}
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")

    # Prove the saved file behaves as intended: load it back and run it.
    saved = torch.jit.load(str(out), map_location="cpu").eval()
    image = sample_image()
    h, w = int(image.shape[1]), int(image.shape[2])
    checks = {}
    size = model_size(saved, image)
    want = expected_size(h, w, int(saved.transform.min_size[0]), int(saved.transform.max_size))
    # torchvision computes the scale in float32: allow a pixel of rounding.
    if any(abs(a - b) > 1 for a, b in zip(size, want)):
        sys.exit(f"the variant resizes {h}x{w} to {size}, expected {want}")
    checks["model_input_hw"] = list(size)
    if a.detections is not None:
        # With no score threshold every image yields the cap: more than N from the
        # source, exactly N from the variant.
        n_src = len(detect(original, image, score_thresh=0.0)["scores"])
        n_var = len(detect(saved, image, score_thresh=0.0)["scores"])
        if not (n_var == a.detections < n_src):
            sys.exit(f"detections cap not effective: source {n_src}, variant {n_var}, cap {a.detections}")
        checks["detections_at_score_0"] = {"source": n_src, "variant": n_var}
    if a.no_masks:
        d_src, d_var = detect(original, image), detect(saved, image)
        if "masks" in d_var:
            sys.exit("the variant still returns masks")
        if a.min_size is None and a.max_size is None and a.detections is None:
            for k in ("boxes", "labels", "scores"):
                if d_src[k].shape != d_var[k].shape or not torch.allclose(
                    d_src[k].float(), d_var[k].float(), atol=1e-4
                ):
                    sys.exit(f"the rebuilt model's {k} differ from the source's")
            checks["same_boxes_as_source"] = len(d_var["scores"])
        checks["masks_returned"] = False
    print(json.dumps({"out": str(out), "changes": changes, "checks": checks}))


if __name__ == "__main__":
    main()
