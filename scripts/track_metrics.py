#!/usr/bin/env python3
"""Score the tracks of a vidinfer v2 document against a sample video's ground truth with
py-motmetrics (CLEAR MOT and identity metrics): an implementation independent of
vidinfer's own.

  scripts/track_metrics.py --truth tests/fixtures/sample/crowd.truth.json --doc out.json

Truth: NAME.truth.json from scripts/make_sample_video.py (per frame: objects with id,
label_id, box [x1, y1, x2, y2] and visible). Document: vidinfer/v2 JSON; only the frames
it lists (frames[].index) are evaluated, so a document sampled every nth frame is scored
on those frames alone.

Hypotheses are the document's detections with score >= --min-score; a detection's track
is its integer `track_id` (a detection without one is an error, unless
--allow-untracked: then each such detection counts as a track of its own). Its box is
`box`, [x1, y1, x2, y2] in source-video pixels.

Matching, per frame: a hypothesis may pair with a truth object of the same label_id with
box IoU >= --iou (distance 1 - IoU, other classes and lower overlaps are do-not-pair);
motmetrics' accumulator does the rest (keeps established pairs, Hungarian assignment,
switches, misses, false positives).

Mostly hidden objects: truth objects with visible < --min-visible are ignored, as
MOTChallenge does with its distractors (motmetrics.preprocess): each frame's hypotheses
are first assigned (Hungarian, same class, IoU >= --iou) to all truth objects, hidden or
not; hypotheses assigned to an ignored object are dropped, then the ignored objects are
dropped. So detecting a mostly hidden object is neither a match nor a false positive,
and missing it is not a miss.

Prints one JSON line on stdout:
  {"frames", "mota", "motp", "idf1", "id_switches", "num_objects", "false_positives",
   "misses", "precision", "recall", "unique_truth_ids", "unique_hyp_ids"}
  frames            document frames evaluated
  mota              1 - (misses + false positives + id switches) / num_objects
  motp              mean 1 - IoU over matches (motmetrics' convention: lower is better)
  idf1              identity F1 (global track-to-identity assignment)
  num_objects       truth objects counted (visible >= --min-visible) over those frames
  unique_*_ids      distinct truth ids / track ids counted (after the ignore step)
(a ratio with a zero denominator is null), and a one-line summary on stderr. Exit 0;
2 on bad input.
"""

import argparse
import json
import math
import sys

import numpy as np

import motmetrics as mm


def fail(msg):
    print(f"track_metrics: {msg}", file=sys.stderr)
    sys.exit(2)


def xywh(boxes):
    """[x1, y1, x2, y2] rows to motmetrics' [x, y, w, h]."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])


def distances(truth, hyps, max_dist):
    """1 - IoU between truth objects and hypotheses; nan (do not pair) above max_dist or
    across classes. (motmetrics.distances.iou_matrix does the same but calls
    np.asfarray, which NumPy 2 removed; its boxiou is what it uses.)"""
    if not truth or not hyps:
        return np.empty((len(truth), len(hyps)))
    a = xywh([o["box"] for o in truth])
    b = xywh([h["box"] for h in hyps])
    d = 1.0 - mm.distances.boxiou(a[:, None], b[None, :])
    d = np.where(d > max_dist, np.nan, d)
    same = np.array([[o["label_id"] == h["label_id"] for h in hyps] for o in truth])
    return np.where(same, d, np.nan)


# motmetrics keeps ids in float64 columns.
MAX_ID = 1 << 53


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def load_hyps(frame, a, untracked):
    hyps = []
    for k, d in enumerate(frame.get("detections") or []):
        where = f"frame {frame['index']} detection {k}"
        try:
            score, label, box = float(d["score"]), d["label_id"], d["box"]
        except (KeyError, TypeError, ValueError) as e:
            fail(f"{where}: not a v2 detection ({e!r})")
        if not (is_int(label) and isinstance(box, list) and len(box) == 4):
            fail(f"{where}: label_id must be an integer and box [x1, y1, x2, y2]")
        if score < a.min_score:
            continue
        tid = d.get("track_id")
        if tid is None:
            if not a.allow_untracked:
                fail(f"{where}: no track_id (use --allow-untracked to count it as a track of its own)")
            tid = next(untracked)
        elif not is_int(tid) or abs(tid) > MAX_ID:
            fail(f"{where}: track_id {tid!r} is not an integer of at most 2^53")
        hyps.append({"id": tid, "label_id": label, "box": [float(v) for v in box]})
    ids = [h["id"] for h in hyps]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1}, key=str)
        fail(f"frame {frame['index']}: track_id {dup} on more than one detection")
    return hyps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--truth", required=True, help="NAME.truth.json (scripts/make_sample_video.py)")
    p.add_argument("--doc", required=True, help="vidinfer v2 output document with track_id on its detections")
    p.add_argument("--min-score", type=float, default=0.5, help="ignore detections scored below this (default: 0.5)")
    p.add_argument("--iou", type=float, default=0.5, help="box IoU needed for a match (default: 0.5)")
    p.add_argument("--min-visible", type=float, default=0.5,
                   help="ignore truth objects less visible than this fraction (default: 0.5)")
    p.add_argument("--allow-untracked", action="store_true",
                   help="count a detection without track_id as a track of its own instead of failing")
    a = p.parse_args(argv)
    if not 0.0 < a.iou <= 1.0:
        p.error("--iou must be in (0, 1]")

    try:
        truth = json.load(open(a.truth))
        doc = json.load(open(a.doc))
    except (OSError, ValueError) as e:
        fail(str(e))
    if not isinstance(doc, dict) or doc.get("schema") != "vidinfer/v2":
        fail(f"{a.doc}: not a vidinfer/v2 document")
    video = doc.get("video") or {}
    if (video.get("width"), video.get("height")) != (truth["width"], truth["height"]):
        fail(f"the document's video is {video.get('width')}x{video.get('height')}, "
             f"the truth's {truth['width']}x{truth['height']}: not the same clip?")
    by_index = {f["index"]: f for f in truth["truth"]}

    max_dist = 1.0 - a.iou
    acc = mm.MOTAccumulator(auto_id=False)
    # Ids for untracked detections: above every track_id in the document.
    tids = [d["track_id"] for f in doc["frames"] for d in f.get("detections") or []
            if isinstance(d, dict) and is_int(d.get("track_id"))]
    untracked = iter(range(max(tids + [0]) + 1, MAX_ID + 1))
    seen = set()
    ignored_truth = ignored_hyps = 0
    for frame in doc["frames"]:
        i = frame.get("index")
        if i not in by_index:
            fail(f"document frame index {i!r} is not in the truth (0..{truth['frames'] - 1})")
        if i in seen:
            fail(f"document frame index {i} appears twice")
        seen.add(i)
        hyps = load_hyps(frame, a, untracked)
        objs = by_index[i]["objects"]
        hidden = [o.get("visible", 1.0) < a.min_visible for o in objs]
        if any(hidden) and hyps:
            d = distances(objs, hyps, max_dist)
            rows, cols = mm.lap.linear_sum_assignment(d)
            drop = {c for r, c in zip(rows, cols) if np.isfinite(d[r, c]) and hidden[r]}
            ignored_hyps += len(drop)
            hyps = [h for k, h in enumerate(hyps) if k not in drop]
        ignored_truth += sum(hidden)
        objs = [o for o, h in zip(objs, hidden) if not h]
        acc.update([o["id"] for o in objs], [h["id"] for h in hyps], distances(objs, hyps, max_dist), frameid=i)

    names = ["mota", "motp", "idf1", "num_switches", "num_objects", "num_false_positives", "num_misses",
             "precision", "recall", "num_unique_objects"]
    m = mm.metrics.create().compute(acc, metrics=names, return_dataframe=False)
    hids = acc.mot_events["HId"].dropna().unique() if len(acc.mot_events) else []

    def num(v, ratio=True):
        v = float(v)
        if math.isnan(v) or math.isinf(v):
            return None
        return round(v, 6) if ratio else int(v)

    out = {
        "frames": len(seen),
        "mota": num(m["mota"]),
        "motp": num(m["motp"]),
        "idf1": num(m["idf1"]),
        "id_switches": num(m["num_switches"], False),
        "num_objects": num(m["num_objects"], False),
        "false_positives": num(m["num_false_positives"], False),
        "misses": num(m["num_misses"], False),
        "precision": num(m["precision"]),
        "recall": num(m["recall"]),
        "unique_truth_ids": num(m["num_unique_objects"], False),
        "unique_hyp_ids": len(hids),
    }
    print(json.dumps(out))
    print(f"track_metrics: {out['frames']} frames, MOTA {out['mota']}, IDF1 {out['idf1']}, "
          f"{out['id_switches']} id switches; ignored {ignored_truth} truth objects under "
          f"{a.min_visible} visible and {ignored_hyps} detections of them", file=sys.stderr)


if __name__ == "__main__":
    main()
