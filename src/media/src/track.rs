//! Multi-object tracking over sampled frames: the same object keeps its `track_id`.
//!
//! ByteTrack's association (Zhang et al., 2022) on boxes in source-video pixels:
//! 1. every track's box is predicted to the frame's time by a constant-velocity Kalman
//!    filter;
//! 2. detections scoring at least [`TrackParams::high_score`] are matched to all live
//!    tracks (tracked and recently lost) by IoU with an optimal assignment
//!    (Kuhn–Munkres, from the `pathfinding` crate), gated at [`TrackParams::iou`];
//! 3. detections between [`TrackParams::low_score`] and `high_score` — often the
//!    partly hidden objects — are matched to the tracks still unmatched that were seen
//!    in the previous frame, gated at the stricter [`LOW_IOU`];
//! 4. unmatched tracks become lost and are forgotten [`TrackParams::buffer_s`] seconds
//!    after their last match (time, not frames, so the buffer means the same at every
//!    sampling rate); unmatched detections scoring at least
//!    [`TrackParams::new_score`] start new tracks.
//!
//! Matching is class-aware: a detection only joins a track of its own label.
//!
//! The Kalman filter is written here rather than taken from a crate: with the usual
//! SORT/ByteTrack model (constant velocity, noise proportional to box size, diagonal
//! noise) the state splits exactly into four independent (position, velocity) pairs —
//! centre x, centre y, width, height — so each track is four 2×2 filters, a few dozen
//! flops per update instead of the dense 8×8 algebra a general filter crate would run.
//!
//! Bad numbers never panic: detections with a non-finite score or box are not tracked
//! (`None`), inverted boxes are normalised, and a track whose state stops being finite
//! is dropped.

use std::collections::HashMap;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use serde::{Deserialize, Serialize};

/// IoU needed to match a low-score detection to a track (ByteTrack's second stage).
pub const LOW_IOU: f64 = 0.5;

/// Frames per second the noise constants below were tuned at (ByteTrack's, per frame);
/// noise is scaled by elapsed time so any sampling rate sees the same model.
const REF_FPS: f64 = 30.0;
/// Position noise, as a fraction of box size, per reference frame.
const STD_POS: f64 = 1.0 / 20.0;
/// Velocity noise, as a fraction of box size per reference frame, per reference frame.
const STD_VEL: f64 = 1.0 / 160.0;

/// How tracking runs for one job.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackParams {
    /// Detections at least this confident are matched first.
    pub high_score: f32,
    /// Detections below this are never tracked.
    pub low_score: f32,
    /// Unmatched detections at least this confident start a new track.
    pub new_score: f32,
    /// Smallest IoU between a predicted track box and a high-score detection to match.
    pub iou: f32,
    /// Seconds a lost track is remembered (and can be found again) after its last match.
    pub buffer_s: f64,
}

impl Default for TrackParams {
    fn default() -> Self {
        TrackParams {
            high_score: 0.5,
            low_score: 0.1,
            new_score: 0.6,
            iou: 0.2,
            buffer_s: 1.0,
        }
    }
}

impl TrackParams {
    /// Why these parameters cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let unit = |v: f32, name: &str| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be within [0, 1], got {v}"))
            }
        };
        unit(self.high_score, "track_high_score")?;
        unit(self.low_score, "track_low_score")?;
        unit(self.new_score, "track_new_score")?;
        unit(self.iou, "track_iou")?;
        if self.low_score > self.high_score {
            return Err(format!(
                "track_low_score ({}) must not exceed track_high_score ({})",
                self.low_score, self.high_score
            ));
        }
        if self.iou <= 0.0 {
            return Err("track_iou must be above 0".into());
        }
        if !(self.buffer_s.is_finite() && (0.0..=3600.0).contains(&self.buffer_s)) {
            return Err(format!(
                "track_buffer_s must be within [0, 3600], got {}",
                self.buffer_s
            ));
        }
        Ok(())
    }
}

/// One (position, velocity) Kalman filter; velocity in pixels per second.
#[derive(Debug, Clone, Copy)]
struct Axis {
    x: f64,
    v: f64,
    /// Covariance [[pp, pv], [pv, vv]].
    pp: f64,
    pv: f64,
    vv: f64,
}

impl Axis {
    fn new(x: f64, size: f64) -> Axis {
        let sp = 2.0 * STD_POS * size;
        let sv = 10.0 * STD_VEL * size * REF_FPS;
        Axis {
            x,
            v: 0.0,
            pp: sp * sp,
            pv: 0.0,
            vv: sv * sv,
        }
    }

    fn predict(&mut self, dt: f64, size: f64) {
        let frames = dt * REF_FPS;
        let qp = frames * (STD_POS * size).powi(2);
        let qv = frames * (STD_VEL * size * REF_FPS).powi(2);
        self.x += self.v * dt;
        // P = F P F' + Q with F = [[1, dt], [0, 1]].
        self.pp += 2.0 * dt * self.pv + dt * dt * self.vv + qp;
        self.pv += dt * self.vv;
        self.vv += qv;
    }

    fn update(&mut self, z: f64, size: f64) {
        let r = (STD_POS * size).powi(2);
        let s = self.pp + r;
        let (kp, kv) = (self.pp / s, self.pv / s);
        let y = z - self.x;
        self.x += kp * y;
        self.v += kv * y;
        let (pp, pv, vv) = (self.pp, self.pv, self.vv);
        self.pp = (1.0 - kp) * pp;
        self.pv = (1.0 - kp) * pv;
        self.vv = vv - kv * pv;
    }

    fn finite(&self) -> bool {
        [self.x, self.v, self.pp, self.pv, self.vv]
            .iter()
            .all(|v| v.is_finite())
    }
}

/// A box as centre and size, the filter's measurement.
#[derive(Debug, Clone, Copy)]
struct Cxywh([f64; 4]);

impl Cxywh {
    /// From `[x1, y1, x2, y2]`, corners in either order; `None` when not finite.
    fn from_corners(b: [f32; 4]) -> Option<Cxywh> {
        if !b.iter().all(|v| v.is_finite()) {
            return None;
        }
        let [a, b, c, d] = b.map(f64::from);
        let (x1, x2) = (a.min(c), a.max(c));
        let (y1, y2) = (b.min(d), b.max(d));
        Some(Cxywh([(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1]))
    }

    fn corners(&self) -> [f64; 4] {
        let [cx, cy, w, h] = self.0;
        let (w, h) = (w.max(0.0) / 2.0, h.max(0.0) / 2.0);
        [cx - w, cy - h, cx + w, cy + h]
    }
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    if inter <= 0.0 {
        return 0.0;
    }
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let v = inter / (area(a) + area(b) - inter);
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// What the document says of one track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackSummary {
    pub id: u64,
    pub label_id: i64,
    /// Index and time of the first and last sampled frames the track was matched in.
    pub first_frame: u64,
    pub last_frame: u64,
    pub first_pts_s: f64,
    pub last_pts_s: f64,
    /// Sampled frames the track was matched in.
    pub frames: u64,
    pub best_score: f32,
    /// `[x1, y1, x2, y2]` in source-video pixels at the best score.
    pub best_box: [f32; 4],
}

#[derive(Debug)]
struct Track {
    id: u64,
    label_id: i64,
    axes: [Axis; 4],
    /// Time of the last prediction or update.
    t: f64,
    /// Time of the last match.
    seen_t: f64,
    /// Matched in the previous frame.
    tracked: bool,
}

impl Track {
    fn new(id: u64, label_id: i64, m: Cxywh, t: f64) -> Track {
        let [cx, cy, w, h] = m.0;
        let (sw, sh) = (w.max(1.0), h.max(1.0));
        Track {
            id,
            label_id,
            axes: [
                Axis::new(cx, sw),
                Axis::new(cy, sh),
                Axis::new(w, sw),
                Axis::new(h, sh),
            ],
            t,
            seen_t: t,
            tracked: true,
        }
    }

    fn sizes(&self) -> [f64; 4] {
        let w = self.axes[2].x.max(1.0);
        let h = self.axes[3].x.max(1.0);
        [w, h, w, h]
    }

    fn predict(&mut self, t: f64) {
        let dt = (t - self.t).max(0.0);
        if !self.tracked {
            // As ByteTrack: a lost track does not keep growing or shrinking.
            self.axes[3].v = 0.0;
        }
        let sizes = self.sizes();
        for (a, s) in self.axes.iter_mut().zip(sizes) {
            a.predict(dt, s);
        }
        self.t = t;
    }

    fn update(&mut self, m: Cxywh, t: f64) {
        let sizes = self.sizes();
        for ((a, z), s) in self.axes.iter_mut().zip(m.0).zip(sizes) {
            a.update(z, s);
        }
        self.seen_t = t;
        self.tracked = true;
    }

    fn corners(&self) -> [f64; 4] {
        Cxywh(self.axes.map(|a| a.x)).corners()
    }

    fn finite(&self) -> bool {
        self.axes.iter().all(Axis::finite)
    }
}

/// One detection offered to the tracker: label, score and `[x1, y1, x2, y2]` in
/// source-video pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub label_id: i64,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// The tracker of one job: feed it the sampled frames in presentation order.
#[derive(Debug)]
pub struct Tracker {
    params: TrackParams,
    tracks: Vec<Track>,
    next_id: u64,
    summaries: HashMap<u64, TrackSummary>,
}

impl Tracker {
    pub fn new(params: TrackParams) -> Tracker {
        Tracker {
            params,
            tracks: Vec::new(),
            next_id: 1,
            summaries: HashMap::new(),
        }
    }

    /// Tracks of one sampled frame: the track id of each observation, in order
    /// (`None`: not tracked — too low a score, a bad box, or unmatched and not
    /// confident enough to start a track).
    pub fn update(
        &mut self,
        frame_index: u64,
        pts_s: f64,
        observations: &[Observation],
    ) -> Vec<Option<u64>> {
        let p = self.params;
        let t = if pts_s.is_finite() { pts_s } else { 0.0 };
        let boxes: Vec<Option<Cxywh>> = observations
            .iter()
            .map(|o| {
                if o.score.is_finite() && o.score >= p.low_score {
                    Cxywh::from_corners(o.bbox)
                } else {
                    None
                }
            })
            .collect();
        for tr in &mut self.tracks {
            tr.predict(t);
        }
        let predicted: Vec<[f64; 4]> = self.tracks.iter().map(Track::corners).collect();

        let mut det_track: Vec<Option<usize>> = vec![None; observations.len()];
        let mut track_used = vec![false; self.tracks.len()];
        let high: Vec<usize> = (0..observations.len())
            .filter(|&d| boxes[d].is_some() && observations[d].score >= p.high_score)
            .collect();
        let all: Vec<usize> = (0..self.tracks.len()).collect();
        self.associate(
            &high,
            &all,
            f64::from(p.iou),
            (observations, &boxes, &predicted),
            &mut det_track,
            &mut track_used,
        );
        let low: Vec<usize> = (0..observations.len())
            .filter(|&d| boxes[d].is_some() && observations[d].score < p.high_score)
            .collect();
        let recent: Vec<usize> = (0..self.tracks.len())
            .filter(|&k| !track_used[k] && self.tracks[k].tracked)
            .collect();
        self.associate(
            &low,
            &recent,
            LOW_IOU,
            (observations, &boxes, &predicted),
            &mut det_track,
            &mut track_used,
        );

        let mut ids = vec![None; observations.len()];
        for (d, k) in det_track.iter().enumerate() {
            if let (Some(k), Some(m)) = (*k, boxes[d]) {
                self.tracks[k].update(m, t);
                ids[d] = Some(self.tracks[k].id);
            }
        }
        for (k, tr) in self.tracks.iter_mut().enumerate() {
            if !track_used[k] {
                tr.tracked = false;
            }
        }
        let buffer = p.buffer_s;
        self.tracks
            .retain(|tr| tr.finite() && (tr.tracked || t - tr.seen_t <= buffer));
        self.start_tracks(t, observations, &boxes, &mut ids);
        for (o, id) in observations.iter().zip(&ids) {
            if let Some(id) = id {
                self.record(*id, frame_index, t, o);
            }
        }
        ids
    }

    /// New tracks for the detections still without one that are confident enough.
    fn start_tracks(
        &mut self,
        t: f64,
        observations: &[Observation],
        boxes: &[Option<Cxywh>],
        ids: &mut [Option<u64>],
    ) {
        for (d, o) in observations.iter().enumerate() {
            if ids[d].is_some() || o.score < self.params.new_score {
                continue;
            }
            if let Some(m) = boxes[d] {
                let tr = Track::new(self.next_id, o.label_id, m, t);
                if tr.finite() {
                    ids[d] = Some(tr.id);
                    self.next_id += 1;
                    self.tracks.push(tr);
                }
            }
        }
    }

    /// Optimal IoU assignment of detections `dets` to tracks `tracks`, within each
    /// class, keeping pairs at or above `gate`.
    fn associate(
        &self,
        dets: &[usize],
        tracks: &[usize],
        gate: f64,
        (obs, boxes, predicted): (&[Observation], &[Option<Cxywh>], &[[f64; 4]]),
        det_track: &mut [Option<usize>],
        track_used: &mut [bool],
    ) {
        let dets: Vec<usize> = dets
            .iter()
            .copied()
            .filter(|&d| det_track[d].is_none())
            .collect();
        let tracks: Vec<usize> = tracks.iter().copied().filter(|&k| !track_used[k]).collect();
        if dets.is_empty() || tracks.is_empty() {
            return;
        }
        // Candidate pairs: same class, IoU at the gate or above.
        let mut pairs: Vec<(usize, usize, f64)> = Vec::new();
        for (i, &d) in dets.iter().enumerate() {
            let Some(b) = boxes[d] else { continue };
            let b = b.corners();
            for (j, &k) in tracks.iter().enumerate() {
                if self.tracks[k].label_id != obs[d].label_id {
                    continue;
                }
                let v = iou(b, predicted[k]);
                if v >= gate {
                    pairs.push((i, j, v));
                }
            }
        }
        for (i, j) in solve(dets.len(), tracks.len(), &pairs) {
            det_track[dets[i]] = Some(tracks[j]);
            track_used[tracks[j]] = true;
        }
    }

    fn record(&mut self, id: u64, frame: u64, t: f64, o: &Observation) {
        let s = self.summaries.entry(id).or_insert_with(|| TrackSummary {
            id,
            label_id: o.label_id,
            first_frame: frame,
            last_frame: frame,
            first_pts_s: t,
            last_pts_s: t,
            frames: 0,
            best_score: f32::NEG_INFINITY,
            best_box: o.bbox,
        });
        s.last_frame = frame;
        s.last_pts_s = t;
        s.frames += 1;
        if o.score > s.best_score {
            s.best_score = o.score;
            let [a, b, c, d] = o.bbox;
            s.best_box = [a.min(c), b.min(d), a.max(c), b.max(d)];
        }
    }

    /// Every track seen so far, by id.
    pub fn summaries(&self) -> Vec<TrackSummary> {
        let mut v: Vec<TrackSummary> = self.summaries.values().cloned().collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// The parameters it runs with.
    pub fn params(&self) -> &TrackParams {
        &self.params
    }

    /// Tracks currently alive (tracked or lost within the buffer).
    pub fn live(&self) -> usize {
        self.tracks.len()
    }
}

/// Maximum-IoU assignment over candidate `pairs` (row, column, IoU) of an
/// `rows × cols` problem. Pairs are split into connected components first, so the
/// cubic solver only sees the few boxes that actually compete for each other.
fn solve(rows: usize, cols: usize, pairs: &[(usize, usize, f64)]) -> Vec<(usize, usize)> {
    // Union-find over rows 0..rows and columns rows..rows+cols.
    let mut parent: Vec<usize> = (0..rows + cols).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for &(i, j, _) in pairs {
        let (a, b) = (find(&mut parent, i), find(&mut parent, rows + j));
        parent[a] = b;
    }
    let mut groups: HashMap<usize, Vec<(usize, usize, f64)>> = HashMap::new();
    for &(i, j, v) in pairs {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push((i, j, v));
    }
    let mut out = Vec::new();
    let mut roots: Vec<usize> = groups.keys().copied().collect();
    roots.sort_unstable();
    for root in roots {
        let group = &groups[&root];
        if let [(i, j, _)] = group.as_slice() {
            out.push((*i, *j));
            continue;
        }
        let mut rs: Vec<usize> = group.iter().map(|p| p.0).collect();
        let mut cs: Vec<usize> = group.iter().map(|p| p.1).collect();
        rs.sort_unstable();
        rs.dedup();
        cs.sort_unstable();
        cs.dedup();
        // The solver wants no more rows than columns: transpose when needed.
        let flip = rs.len() > cs.len();
        let (r_ids, c_ids) = if flip { (&cs, &rs) } else { (&rs, &cs) };
        let mut m = Matrix::new(r_ids.len(), c_ids.len(), 0i64);
        for &(i, j, v) in group {
            let (r, c) = if flip { (j, i) } else { (i, j) };
            let r = r_ids.binary_search(&r).expect("row in group");
            let c = c_ids.binary_search(&c).expect("column in group");
            // IoU in millionths; +1 so a gated pair always beats no pair.
            m[(r, c)] = (v * 1e6) as i64 + 1;
        }
        let (_, assign) = kuhn_munkres(&m);
        for (r, &c) in assign.iter().enumerate() {
            if m[(r, c)] > 0 {
                let (a, b) = (r_ids[r], c_ids[c]);
                out.push(if flip { (b, a) } else { (a, b) });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(label_id: i64, score: f32, bbox: [f32; 4]) -> Observation {
        Observation {
            label_id,
            score,
            bbox,
        }
    }

    fn shifted(b: [f32; 4], dx: f32, dy: f32) -> [f32; 4] {
        [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy]
    }

    #[test]
    fn moving_objects_keep_their_ids() {
        let mut t = Tracker::new(TrackParams::default());
        let (a, b) = ([10.0, 10.0, 50.0, 50.0], [200.0, 100.0, 240.0, 150.0]);
        let first = t.update(0, 0.0, &[obs(1, 0.9, a), obs(2, 0.8, b)]);
        assert_eq!(first, vec![Some(1), Some(2)]);
        for i in 1..50u64 {
            let s = i as f32;
            // Listed in the other order each frame: ids follow boxes, not positions.
            let ids = t.update(
                i,
                i as f64 / 25.0,
                &[
                    obs(2, 0.8, shifted(b, -3.0 * s, 1.0 * s)),
                    obs(1, 0.9, shifted(a, 4.0 * s, 2.0 * s)),
                ],
            );
            assert_eq!(ids, vec![Some(2), Some(1)], "frame {i}");
        }
        let s = t.summaries();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].first_frame, s[0].last_frame, s[0].frames),
            (0, 49, 50)
        );
    }

    #[test]
    fn fast_object_is_followed_through_its_velocity() {
        // 20 px wide: 8 px per frame at first (IoU of consecutive boxes 0.43), then
        // 14 px per frame, where consecutive boxes overlap by IoU 0.18, below the gate:
        // only the predicted box can match it.
        let mut t = Tracker::new(TrackParams::default());
        let mut x = 0.0f32;
        for i in 0..40u64 {
            x += if i < 10 { 8.0 } else { 14.0 };
            let ids = t.update(i, i as f64 / 25.0, &[obs(1, 0.9, [x, 0.0, x + 20.0, 20.0])]);
            assert_eq!(ids, vec![Some(1)], "frame {i}");
        }
    }

    #[test]
    fn crossing_objects_of_one_class_do_not_swap() {
        let mut t = Tracker::new(TrackParams::default());
        let (a0, b0) = ([0.0, 100.0, 30.0, 130.0], [300.0, 104.0, 330.0, 134.0]);
        let mut ids_a = Vec::new();
        for i in 0..60u64 {
            let s = i as f32 * 5.0;
            let ids = t.update(
                i,
                i as f64 / 25.0,
                &[
                    obs(1, 0.9, shifted(a0, s, 0.0)),
                    obs(1, 0.9, shifted(b0, -s, 0.0)),
                ],
            );
            ids_a.push(ids[0]);
        }
        assert!(ids_a.iter().all(|&i| i == Some(1)), "{ids_a:?}");
    }

    #[test]
    fn a_lost_track_is_found_again_within_the_buffer_and_forgotten_after() {
        let p = TrackParams {
            buffer_s: 0.5,
            ..TrackParams::default()
        };
        let mut t = Tracker::new(p);
        let b = [100.0, 100.0, 140.0, 140.0];
        t.update(0, 0.0, &[obs(1, 0.9, b)]);
        t.update(1, 0.1, &[]);
        t.update(2, 0.2, &[]);
        assert_eq!(t.update(3, 0.3, &[obs(1, 0.9, b)]), vec![Some(1)]);
        for i in 4..15 {
            t.update(i, i as f64 / 10.0, &[]);
        }
        assert_eq!(t.live(), 0);
        assert_eq!(t.update(15, 1.5, &[obs(1, 0.9, b)]), vec![Some(2)]);
    }

    #[test]
    fn low_scores_extend_tracks_but_never_start_them() {
        let mut t = Tracker::new(TrackParams::default());
        let b = [100.0, 100.0, 140.0, 140.0];
        assert_eq!(t.update(0, 0.0, &[obs(1, 0.3, b)]), vec![None]);
        assert_eq!(t.update(1, 0.04, &[obs(1, 0.9, b)]), vec![Some(1)]);
        assert_eq!(t.update(2, 0.08, &[obs(1, 0.3, b)]), vec![Some(1)]);
        // Between high and new: matched when a track is there, otherwise untracked.
        assert_eq!(t.update(3, 0.12, &[obs(1, 0.55, b)]), vec![Some(1)]);
        let far = shifted(b, 500.0, 0.0);
        assert_eq!(t.update(4, 0.16, &[obs(1, 0.55, far)]), vec![None]);
        assert_eq!(t.update(5, 0.2, &[obs(1, 0.05, b)]), vec![None]);
    }

    #[test]
    fn classes_do_not_mix() {
        let mut t = Tracker::new(TrackParams::default());
        let b = [100.0, 100.0, 140.0, 140.0];
        assert_eq!(t.update(0, 0.0, &[obs(1, 0.9, b)]), vec![Some(1)]);
        assert_eq!(t.update(1, 0.04, &[obs(2, 0.9, b)]), vec![Some(2)]);
        assert_eq!(t.update(2, 0.08, &[obs(1, 0.9, b)]), vec![Some(1)]);
    }

    #[test]
    fn summaries_record_the_best_box() {
        let mut t = Tracker::new(TrackParams::default());
        t.update(3, 0.1, &[obs(1, 0.7, [10.0, 10.0, 50.0, 50.0])]);
        t.update(6, 0.2, &[obs(1, 0.95, [52.0, 12.0, 12.0, 52.0])]);
        t.update(9, 0.3, &[obs(1, 0.8, [14.0, 14.0, 54.0, 54.0])]);
        let s = &t.summaries()[0];
        assert_eq!((s.first_frame, s.last_frame, s.frames), (3, 9, 3));
        assert_eq!((s.first_pts_s, s.last_pts_s), (0.1, 0.3));
        assert_eq!(s.best_score, 0.95);
        assert_eq!(s.best_box, [12.0, 12.0, 52.0, 52.0]);
    }

    #[test]
    fn hostile_numbers_never_panic() {
        let bad = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            0.0,
            -1.0,
            1e30,
            1e-30,
        ];
        let mut t = Tracker::new(TrackParams::default());
        let mut n = 0u64;
        for &a in &bad {
            for &b in &bad {
                let o = [
                    obs(1, 0.9, [a, b, a, b]),
                    obs(1, a, [0.0, 0.0, 10.0, 10.0]),
                    obs(1, 0.9, [b, a, 10.0, b]),
                    obs(1, 0.9, [0.0, 0.0, 10.0, 10.0]),
                ];
                let ids = t.update(n, f64::from(a), &o);
                assert_eq!(ids.len(), 4);
                assert!(ids[1].is_none() || a.is_finite());
                n += 1;
            }
        }
        t.summaries();
    }

    #[test]
    fn params_are_checked() {
        assert!(TrackParams::default().check().is_ok());
        let bad = [
            TrackParams {
                iou: 0.0,
                ..TrackParams::default()
            },
            TrackParams {
                high_score: 1.5,
                ..TrackParams::default()
            },
            TrackParams {
                low_score: 0.7,
                ..TrackParams::default()
            },
            TrackParams {
                buffer_s: f64::NAN,
                ..TrackParams::default()
            },
            TrackParams {
                buffer_s: -1.0,
                ..TrackParams::default()
            },
        ];
        for p in bad {
            assert!(p.check().is_err(), "{p:?}");
        }
    }

    #[test]
    fn solver_matches_optimally_and_by_component() {
        // Row 0 prefers column 0 slightly, but row 1 can only take column 0: optimal
        // is 0→1, 1→0. Row 2/column 2 is its own component.
        let pairs = [(0, 0, 0.6), (0, 1, 0.5), (1, 0, 0.9), (2, 2, 0.4)];
        let mut got = solve(3, 3, &pairs);
        got.sort_unstable();
        assert_eq!(got, vec![(0, 1), (1, 0), (2, 2)]);
        // More rows than columns.
        let mut got = solve(3, 1, &[(0, 0, 0.3), (1, 0, 0.8), (2, 0, 0.5)]);
        got.sort_unstable();
        assert_eq!(got, vec![(1, 0)]);
    }
}
