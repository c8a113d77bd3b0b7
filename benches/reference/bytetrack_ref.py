#!/usr/bin/env python3
"""Reference tracker for benches/track.rs: Roboflow supervision's ByteTrack (the
Python ByteTrack most video pipelines wrap) over the same detections.

  bytetrack_ref.py SEQUENCE.json [--runs N]

SEQUENCE.json: {"fps": F, "frames": [[[x1, y1, x2, y2, score, label], ...], ...]}.
Detections are built before the clock starts; each run times a fresh tracker's
update_with_detections over every frame. Prints one JSON line:
{"per_frame_us": best run's mean, "tracks": distinct ids the best run assigned}.
"""

import argparse
import json
import time

import numpy as np
import supervision as sv


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sequence")
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    seq = json.load(open(a.sequence))
    frames = []
    for dets in seq["frames"]:
        arr = np.asarray(dets, dtype=np.float32).reshape(-1, 6)
        frames.append(
            sv.Detections(xyxy=arr[:, :4].copy(), confidence=arr[:, 4].copy(), class_id=arr[:, 5].astype(int))
        )
    best, ids = None, set()
    for _ in range(a.runs):
        tracker = sv.ByteTrack(
            track_activation_threshold=0.5,
            lost_track_buffer=30,
            minimum_matching_threshold=0.8,
            frame_rate=int(round(seq["fps"])),
        )
        outs = []
        start = time.perf_counter()
        for d in frames:
            outs.append(tracker.update_with_detections(d).tracker_id)
        took = time.perf_counter() - start
        if best is None or took < best:
            best, ids = took, {int(i) for o in outs for i in o}
    print(json.dumps({"per_frame_us": best / len(frames) * 1e6, "tracks": len(ids)}))


if __name__ == "__main__":
    main()
