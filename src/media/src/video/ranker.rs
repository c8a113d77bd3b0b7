//! Presentation-order frame indices from packets read in decode order, and the
//! keep-decision for each index.
//!
//! This is the part of decoding that must be exactly right: a frame's index is what
//! callers see, what every-Nth sampling counts, and what decides which packets the
//! decoder may skip. It lives in its own type, apart from FFmpeg, because its rules
//! are pure bookkeeping over timestamps (plain `i64` ticks of the stream's time base),
//! so they can be tested on synthetic timestamp sequences — B-frame reordering,
//! missing or repeated timestamps, dropped frames — without a video file. The
//! [`Decoder`](super::Decoder) reads packets, asks the ranker about each one, and
//! applies its answers to FFmpeg.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Sampling, TimeRange};

/// How many video packets the decoder reads ahead of the one it sends, so that each
/// packet's presentation index is known before it is decoded. Real encoders reorder by
/// at most 16 frames (the H.264/HEVC DPB); twice that leaves room for odd muxers.
pub(super) const LOOKAHEAD_PACKETS: usize = 32;

/// Decides, in presentation order, which frames are kept.
#[derive(Debug, Clone)]
struct Sampler {
    sampling: Sampling,
    last_slot: Option<i64>,
}

impl Sampler {
    fn new(sampling: Sampling) -> Sampler {
        Sampler {
            sampling,
            last_slot: None,
        }
    }

    fn keep(&mut self, index: u64, pts_s: f64) -> bool {
        match self.sampling {
            Sampling::EveryNth(n) => index % u64::from(n) == 0,
            Sampling::Fps(fps) => {
                // A tiny epsilon so a frame exactly on a slot boundary (t = k/fps)
                // lands in slot k despite float rounding.
                let slot = (pts_s * fps + 1e-6).floor() as i64;
                if self.last_slot.is_some_and(|s| slot <= s) {
                    false
                } else {
                    self.last_slot = Some(slot);
                    true
                }
            }
            // Whether a frame is a keyframe is known only once it is decoded: the
            // decoder discards the others and checks the picture's key flag.
            Sampling::Keyframes => true,
        }
    }
}

/// A frame's presentation index and whether the sampling keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Position in presentation order, counting every frame of the video from 0.
    pub index: u64,
    /// Whether the sampling keeps this frame.
    pub kept: bool,
}

/// Why frame indices stopped coming from timestamps. Once degraded, a [`Ranker`]
/// counts frames as they leave the decoder and allows no skipping; it never goes
/// back. The `Display` text is what the decoder logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degrade {
    /// A packet carried no timestamp.
    MissingTimestamps,
    /// A packet's timestamp repeats one already read, or falls before a frame that
    /// already has its index (the stream reorders by more than the look-ahead).
    OutOfOrder,
    /// A frame left the decoder with a timestamp no packet waiting for its frame
    /// carried (e.g. AVI's packed B-frames, which carry their neighbour's time).
    UnknownTimestamp,
}

impl fmt::Display for Degrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Degrade::MissingTimestamps => "packets without timestamps",
            Degrade::OutOfOrder => "timestamps out of the look-ahead order",
            Degrade::UnknownTimestamp => "a frame with a timestamp no packet carried",
        })
    }
}

/// What the ranker decided for a frame that left the decoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Position in presentation order, counting every frame of the video from 0.
    pub index: u64,
    /// Whether the sampling keeps this frame.
    pub kept: bool,
    /// Presentation time in seconds from the start of the video.
    pub pts_s: f64,
    /// Set when this very frame made the ranker give up on timestamps.
    pub degraded: Option<Degrade>,
}

/// Assigns presentation indices to packets read in decode order, and keep-decisions
/// to the indices.
///
/// Packets arrive in decode order; the decoder reads a fixed number of them ahead
/// (32) and reports each one to [`Ranker::on_packet`]. A timestamp's index is final
/// once every packet that could be shown before it has been read, so indices are
/// handed out in timestamp order to the pending timestamps up to the smallest one
/// still in the look-ahead ([`Ranker::skippable`]), or up to that of a frame that
/// left the decoder ([`Ranker::on_frame`]). A packet whose frame already has an index
/// and is not kept may be skipped by the decoder.
///
/// When the stream breaks that model (no timestamps, repeats, reordering deeper than
/// the look-ahead, frames with timestamps no packet carried) the ranker *degrades*:
/// indices come from counting frames as they leave the decoder, times from the
/// index at the stated frame rate, and nothing is skippable from then on.
#[derive(Debug, Clone)]
pub struct Ranker {
    sampler: Sampler,
    /// Frames outside it are not kept (the sampling still sees them, so a range keeps
    /// exactly what the whole video's sampling keeps in it).
    range: TimeRange,
    /// Seconds per timestamp tick.
    time_base: f64,
    /// The timestamp of time 0: the stream's start time, else the first packet's.
    start_pts: Option<i64>,
    /// The stated frame rate: the clock for frames whose timestamps cannot be trusted.
    fps: Option<f64>,
    /// Timestamps read but not yet given an index.
    pending: BTreeSet<i64>,
    /// Timestamps with an index, waiting for their frame to leave the decoder.
    ranked: BTreeMap<i64, Slot>,
    next_index: u64,
    /// Largest timestamp given an index so far.
    watermark: Option<i64>,
    /// Cleared when the stream breaks the look-ahead assumption or lacks timestamps.
    exact: bool,
}

impl Ranker {
    /// A ranker for a stream whose timestamps tick `time_base` seconds, shown from
    /// `start_pts` (`None`: from the first packet's timestamp), at a stated rate of
    /// `fps` frames per second when the container gives one.
    pub fn new(
        sampling: Sampling,
        time_base: f64,
        start_pts: Option<i64>,
        fps: Option<f64>,
    ) -> Self {
        Ranker {
            sampler: Sampler::new(sampling),
            range: TimeRange::default(),
            time_base,
            start_pts,
            fps,
            pending: BTreeSet::new(),
            ranked: BTreeMap::new(),
            next_index: 0,
            watermark: None,
            exact: true,
        }
    }

    /// Keep only frames in `range`.
    pub fn with_range(mut self, range: TimeRange) -> Self {
        self.range = range;
        self
    }

    /// The sampling's decision for a frame, within the range.
    fn keep(&mut self, index: u64, pts_s: f64) -> bool {
        let sampled = self.sampler.keep(index, pts_s);
        sampled && self.range.contains(pts_s)
    }

    /// Whether indices come from timestamps (exact, skipping allowed) or from
    /// counting decoded frames.
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// The index the next frame to be ranked or counted gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// A packet of the video stream was read (in decode order). `Err` carries the
    /// reason when this packet made the ranker degrade; it is returned once, on the
    /// change.
    pub fn on_packet(&mut self, pts: Option<i64>) -> Result<(), Degrade> {
        if self.start_pts.is_none() {
            self.start_pts = pts;
        }
        match pts {
            Some(pts) => {
                if self.watermark.is_some_and(|w| pts <= w) || !self.pending.insert(pts) {
                    // Shown before a frame that already has its index, or a repeated
                    // timestamp: indices can no longer be derived from timestamps.
                    return self.degrade(Degrade::OutOfOrder);
                }
                Ok(())
            }
            None => self.degrade(Degrade::MissingTimestamps),
        }
    }

    fn degrade(&mut self, why: Degrade) -> Result<(), Degrade> {
        if self.exact {
            self.exact = false;
            Err(why)
        } else {
            Ok(())
        }
    }

    /// True when the frame of the packet about to be sent (timestamp `pts`) is known
    /// not to be kept, so the decoder may skip it. `window` holds the timestamps of the
    /// packets read after it (the rest of the look-ahead). Always false once degraded.
    pub fn skippable(
        &mut self,
        pts: Option<i64>,
        window: impl IntoIterator<Item = Option<i64>>,
    ) -> bool {
        if !self.exact {
            return false;
        }
        let Some(pts) = pts else {
            return false;
        };
        // Everything in the look-ahead, and so everything read later, is shown after
        // the earliest timestamp still in it: what is below that is final.
        let window_min = window
            .into_iter()
            .flatten()
            .chain(std::iter::once(pts))
            .min();
        self.finalize(window_min);
        self.ranked.get(&pts).is_some_and(|s| !s.kept)
    }

    /// Give indices, in presentation order, to every pending timestamp up to `limit`
    /// (all of them when `limit` is `None`). Does nothing once degraded.
    pub fn finalize(&mut self, limit: Option<i64>) {
        if !self.exact {
            return;
        }
        while let Some(&pts) = self.pending.first() {
            if limit.is_some_and(|l| pts > l) {
                break;
            }
            self.pending.pop_first();
            let index = self.next_index;
            self.next_index += 1;
            let kept = self.keep(index, self.seconds(pts));
            self.ranked.insert(pts, Slot { index, kept });
            self.watermark = Some(pts);
        }
    }

    /// A frame left the decoder with presentation timestamp `pts` (and FFmpeg's
    /// best-effort timestamp `best_effort`): decide its index, whether it is kept, and
    /// its time.
    pub fn on_frame(&mut self, pts: Option<i64>, best_effort: Option<i64>) -> Placement {
        let mut degraded = None;
        let slot = match pts {
            Some(pts) if self.exact => {
                self.finalize(Some(pts));
                match self.take(pts) {
                    Some(slot) => slot,
                    None => {
                        degraded = self.degrade(Degrade::UnknownTimestamp).err();
                        self.count(self.seconds(pts))
                    }
                }
            }
            Some(pts) => match self.take(pts) {
                Some(slot) => slot,
                None => self.count(self.counted_pts_s(self.next_index, best_effort)),
            },
            None => self.count(self.counted_pts_s(self.next_index, best_effort)),
        };
        // Without trustworthy timestamps (e.g. AVI's packed B-frames, whose frames carry
        // their neighbour's time) the index at the stated rate is the better clock.
        let pts_s = match pts {
            Some(p) if self.exact => self.seconds(p),
            _ => self.counted_pts_s(slot.index, best_effort),
        };
        Placement {
            index: slot.index,
            kept: slot.kept,
            pts_s,
            degraded,
        }
    }

    /// The index a frame got from timestamps, if any. Frames leave the decoder in
    /// presentation order, so entries before `pts` belong to frames the decoder
    /// dropped and are forgotten.
    pub fn take(&mut self, pts: i64) -> Option<Slot> {
        let later = self.ranked.split_off(&(pts + 1));
        let slot = self.ranked.remove(&pts);
        self.ranked = later;
        slot
    }

    /// Index and keep-decision for a frame when timestamps cannot be trusted: the
    /// next number after every index handed out so far, kept or not as the sampling
    /// decides for a frame at `pts_s`.
    pub fn count(&mut self, pts_s: f64) -> Slot {
        let index = self.next_index;
        self.next_index += 1;
        Slot {
            index,
            kept: self.keep(index, pts_s),
        }
    }

    /// Seconds from the start of the video at timestamp `pts`.
    pub fn seconds(&self, pts: i64) -> f64 {
        (pts - self.start_pts.unwrap_or(0)) as f64 * self.time_base
    }

    /// Presentation time of a frame without a usable timestamp: from its index at the
    /// stated frame rate (such streams, e.g. AVI, are constant-rate by construction),
    /// else from the best-effort timestamp, else 0.
    pub fn counted_pts_s(&self, index: u64, best_effort: Option<i64>) -> f64 {
        match self.fps {
            Some(f) => index as f64 / f,
            None => best_effort.map_or(0.0, |t| self.seconds(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, VecDeque};

    use super::*;

    /// One packet of a synthetic stream: its place in presentation order (which the
    /// fake decoder uses to reorder) and the timestamp it carries.
    #[derive(Clone, Copy)]
    struct Packet {
        order: u64,
        pts: Option<i64>,
    }

    /// What happened to one frame of a simulated decode.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Out {
        /// The fake decoder's presentation position of the frame.
        order: u64,
        placement: Placement,
    }

    struct Run {
        frames: Vec<Out>,
        /// `order` of the packets sent with a skip flag.
        skipped: Vec<u64>,
        degrades: Vec<Degrade>,
    }

    /// Drive a ranker as `Decoder` does: fill a look-ahead of [`LOOKAHEAD_PACKETS`]
    /// packets (reporting each read), send the oldest (asking whether it may be
    /// skipped), and rank the frames a reordering decoder returns in presentation
    /// order. The fake decoder holds `delay` pictures before it outputs one, drops a
    /// skipped frame when its `order` is in `non_ref`, and outputs `pts` as the frame
    /// timestamp (and as the best-effort timestamp).
    fn simulate(
        ranker: &mut Ranker,
        packets: &[Packet],
        delay: usize,
        non_ref: &BTreeSet<u64>,
    ) -> Run {
        let mut input = packets.iter().copied();
        let mut window: VecDeque<Packet> = VecDeque::new();
        let mut held: BTreeMap<u64, Option<i64>> = BTreeMap::new();
        let mut run = Run {
            frames: Vec::new(),
            skipped: Vec::new(),
            degrades: Vec::new(),
        };
        let mut eof_sent = false;
        loop {
            if held.len() > delay || (eof_sent && !held.is_empty()) {
                let (order, pts) = held.pop_first().unwrap();
                let placement = ranker.on_frame(pts, pts);
                run.degrades.extend(placement.degraded);
                run.frames.push(Out { order, placement });
                continue;
            }
            if eof_sent {
                return run;
            }
            while window.len() < LOOKAHEAD_PACKETS {
                let Some(p) = input.next() else { break };
                if let Err(why) = ranker.on_packet(p.pts) {
                    run.degrades.push(why);
                }
                window.push_back(p);
            }
            match window.pop_front() {
                Some(p) => {
                    if ranker.skippable(p.pts, window.iter().map(|w| w.pts)) {
                        run.skipped.push(p.order);
                        if non_ref.contains(&p.order) {
                            continue;
                        }
                    }
                    held.insert(p.order, p.pts);
                }
                None => {
                    ranker.finalize(None);
                    eof_sent = true;
                }
            }
        }
    }

    /// Decode order I0 P3 B1 B2 P6 B4 B5 … for frames `0..n` (`n` = 3k + 1), each
    /// packet's timestamp `start + order * step`.
    fn ipbb(n: u64, start: i64, step: i64) -> Vec<Packet> {
        let mut order = vec![0];
        for p in (3..n).step_by(3) {
            order.extend([p, p - 2, p - 1]);
        }
        order
            .into_iter()
            .map(|o| Packet {
                order: o,
                pts: Some(start + o as i64 * step),
            })
            .collect()
    }

    fn kept(run: &Run) -> Vec<u64> {
        run.frames
            .iter()
            .filter(|f| f.placement.kept)
            .map(|f| f.placement.index)
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn fps_sampler_keeps_first_frame_of_each_slot() {
        let mut s = Sampler::new(Sampling::Fps(2.0));
        let kept: Vec<u64> = (0..30).filter(|&i| s.keep(i, i as f64 / 10.0)).collect();
        assert_eq!(kept, vec![0, 5, 10, 15, 20, 25]);
    }

    /// (a) B-frames: packets in decode order 0 3 1 2 6 4 5 …, frames out in
    /// presentation order. Every frame gets its presentation index and time; the kept
    /// indices are every 4th; exactly the B-frames that are not kept were sent with a
    /// skip flag, and dropping them changes no other index.
    #[test]
    fn b_frames_get_presentation_indices_and_only_unkept_b_frames_are_skipped() {
        // MP4-like: 25 fps in a 1/12800 time base, the stream's start time unknown.
        let packets = ipbb(31, 1024, 512);
        let b_frames: BTreeSet<u64> = (0..31).filter(|o| o % 3 != 0).collect();
        let mut ranker = Ranker::new(Sampling::EveryNth(4), 1.0 / 12800.0, None, Some(25.0));
        let run = simulate(&mut ranker, &packets, 1, &b_frames);

        assert!(run.degrades.is_empty());
        assert!(ranker.is_exact());
        assert_eq!(
            run.skipped,
            vec![1, 2, 5, 7, 10, 11, 13, 14, 17, 19, 22, 23, 25, 26, 29]
        );
        assert_eq!(kept(&run), vec![0, 4, 8, 12, 16, 20, 24, 28]);
        let out: Vec<u64> = run.frames.iter().map(|f| f.order).collect();
        let expected_out: Vec<u64> = (0..31).filter(|o| !run.skipped.contains(o)).collect();
        assert_eq!(out, expected_out, "skipped frames never come out");
        for f in &run.frames {
            assert_eq!(f.placement.index, f.order, "index of frame {}", f.order);
            assert!(close(f.placement.pts_s, f.order as f64 / 25.0));
        }
    }

    /// (a) The same reordering under fps sampling, without skipping: 3 fps over 25 fps
    /// frames keeps the first frame at or after each third of a second.
    #[test]
    fn b_frames_under_fps_sampling_keep_the_first_frame_of_each_slot() {
        let packets = ipbb(31, 0, 1);
        let mut ranker = Ranker::new(Sampling::Fps(3.0), 1.0 / 25.0, Some(0), Some(25.0));
        let run = simulate(&mut ranker, &packets, 1, &BTreeSet::new());
        assert!(ranker.is_exact());
        assert_eq!(kept(&run), vec![0, 9, 17, 25]);
        let indices: Vec<u64> = run.frames.iter().map(|f| f.placement.index).collect();
        assert_eq!(indices, (0..31).collect::<Vec<_>>());
        // B-frames 1 2 4 5 7 8 10 11 13 14 16 … except the kept 17 and 25.
        let expected_skips: Vec<u64> = (0..31)
            .filter(|o| o % 3 != 0 && ![17, 25].contains(o))
            .collect();
        assert_eq!(run.skipped, expected_skips);
    }

    /// (a) A deep B-pyramid (reordering by up to 7 frames) over a stream longer than
    /// the look-ahead: indices still follow presentation order.
    #[test]
    fn b_pyramid_longer_than_the_look_ahead_stays_exact() {
        let mut packets = vec![Packet {
            order: 0,
            pts: Some(0),
        }];
        for base in (0..200).step_by(8) {
            for d in [8, 4, 2, 1, 3, 6, 5, 7] {
                let o = base + d;
                packets.push(Packet {
                    order: o,
                    pts: Some(o as i64 * 3600),
                });
            }
        }
        let mut ranker = Ranker::new(Sampling::EveryNth(5), 1.0 / 90000.0, Some(0), None);
        let run = simulate(&mut ranker, &packets, 8, &BTreeSet::new());
        assert!(run.degrades.is_empty());
        assert!(ranker.is_exact());
        assert_eq!(run.frames.len(), 201);
        for f in &run.frames {
            assert_eq!(f.placement.index, f.order);
            assert_eq!(f.placement.kept, f.order % 5 == 0);
        }
        assert!(!run.skipped.is_empty());
        assert!(
            run.skipped.iter().all(|o| o % 5 != 0),
            "a kept frame was skipped"
        );
    }

    /// (b) Packets without timestamps: the ranker degrades once, at the first one; the
    /// frames ranked before keep their indices, later ones are counted, so indices run
    /// on without a gap, times come from the stated rate, and nothing is skipped.
    #[test]
    fn missing_timestamps_degrade_to_counting_without_skipping() {
        // 40 packets with timestamps (deeper than the look-ahead), then 20 without.
        let mut packets = ipbb(40, 0, 1);
        packets.extend((40..60).map(|o| Packet {
            order: o,
            pts: None,
        }));
        let mut ranker = Ranker::new(Sampling::EveryNth(3), 1.0 / 25.0, Some(0), Some(25.0));
        let run = simulate(&mut ranker, &packets, 1, &BTreeSet::new());

        assert_eq!(run.degrades, vec![Degrade::MissingTimestamps]);
        assert!(!ranker.is_exact());
        // The look-ahead reads the first packet without a timestamp (decode position
        // 40) just before it sends position 9 (frame 8): the B-frames not kept that
        // were sent before that are skipped; frame 8, also a B-frame not kept, is not.
        assert_eq!(run.skipped, vec![1, 2, 4, 5, 7]);
        let indices: Vec<u64> = run.frames.iter().map(|f| f.placement.index).collect();
        assert_eq!(indices, (0..60).collect::<Vec<_>>());
        assert_eq!(kept(&run), (0..60).step_by(3).collect::<Vec<_>>());
        for f in &run.frames {
            assert!(close(f.placement.pts_s, f.order as f64 / 25.0), "{f:?}");
        }
        // Degraded for good: timestamps that would be skippable are not.
        assert!(!ranker.skippable(Some(1000), []));
    }

    /// Skip decisions: the index frontier advances only up to the packet being sent
    /// when it is the earliest, so a packet read later and shown between it and the
    /// rest of the look-ahead still gets an exact index; and once degraded, nothing is
    /// skippable, not even a frame already known not to be kept.
    #[test]
    fn only_final_indices_decide_skips_and_never_after_a_degrade() {
        let mut ranker = Ranker::new(Sampling::EveryNth(2), 1.0, Some(0), None);
        for pts in [0, 5, 1, 6] {
            ranker.on_packet(Some(pts)).unwrap();
        }
        // Sending 1 (index 1, not kept) with 6 still in the look-ahead.
        assert!(ranker.skippable(Some(1), [Some(6)]));
        assert_eq!(ranker.next_index(), 2, "5 and 6 are not final yet");
        assert_eq!(ranker.on_packet(Some(3)), Ok(()));
        assert!(!ranker.skippable(Some(6), [Some(3)]));
        // 3 was read after 5 but is shown before it: it gets index 2, kept.
        assert!(!ranker.skippable(Some(3), []));
        assert_eq!(
            ranker.take(3),
            Some(Slot {
                index: 2,
                kept: true
            })
        );
        assert!(ranker.is_exact());

        let mut ranker = Ranker::new(Sampling::EveryNth(2), 1.0, Some(0), None);
        for pts in [0, 1, 2] {
            ranker.on_packet(Some(pts)).unwrap();
        }
        ranker.finalize(Some(1));
        assert_eq!(ranker.on_packet(None), Err(Degrade::MissingTimestamps));
        assert!(!ranker.skippable(Some(1), [Some(2)]), "index 1 is not kept");
    }

    /// (b) No timestamps at all: counting from the first frame, and without a stated
    /// rate the best-effort timestamp (here none: 0) is the time.
    #[test]
    fn a_stream_without_any_timestamp_is_counted() {
        let mut ranker = Ranker::new(Sampling::EveryNth(2), 1.0 / 25.0, None, None);
        assert_eq!(ranker.on_packet(None), Err(Degrade::MissingTimestamps));
        assert_eq!(ranker.on_packet(None), Ok(()), "reported once");
        assert!(!ranker.skippable(None, [None]));
        let placed: Vec<Placement> = (0..4).map(|_| ranker.on_frame(None, None)).collect();
        let got: Vec<(u64, bool)> = placed.iter().map(|p| (p.index, p.kept)).collect();
        assert_eq!(got, vec![(0, true), (1, false), (2, true), (3, false)]);
        assert!(placed
            .iter()
            .all(|p| p.pts_s == 0.0 && p.degraded.is_none()));
        let p = ranker.on_frame(None, Some(50));
        assert_eq!(p.index, 4);
        assert!(
            close(p.pts_s, 2.0),
            "best-effort time without a stated rate"
        );
    }

    /// (c) AVI packed B-frames: packets carry increasing timestamps, but a frame comes
    /// out carrying its neighbour's (already used) time. The ranker degrades at that
    /// frame and from then on counts: index = previous + 1, time = index / fps, even
    /// though the frames' timestamps say otherwise.
    #[test]
    fn a_frame_with_its_neighbours_time_degrades_to_counting_at_the_stated_rate() {
        let mut ranker = Ranker::new(Sampling::EveryNth(2), 1.0 / 25.0, Some(0), Some(25.0));
        for pts in 0..10 {
            assert_eq!(ranker.on_packet(Some(pts)), Ok(()));
        }
        let out: Vec<Placement> = [0, 1, 1, 2, 4, 3, 5]
            .into_iter()
            .map(|pts| ranker.on_frame(Some(pts), Some(pts)))
            .collect();
        assert_eq!(out[2].degraded, Some(Degrade::UnknownTimestamp));
        assert!(out
            .iter()
            .enumerate()
            .all(|(i, p)| (i == 2) == p.degraded.is_some()));
        assert!(!ranker.is_exact());
        let got: Vec<(u64, bool)> = out.iter().map(|p| (p.index, p.kept)).collect();
        assert_eq!(
            got,
            vec![
                (0, true),
                (1, false),
                (2, true),
                (3, false),
                (4, true),
                (5, false),
                (6, true)
            ]
        );
        let times: Vec<f64> = out.iter().map(|p| p.pts_s).collect();
        assert_eq!(times, vec![0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.24]);
    }

    /// (c) Under fps sampling the frame that degrades is kept or not by its own
    /// timestamp, while its reported time is counted (pins the existing behaviour).
    #[test]
    fn the_degrading_frame_is_sampled_at_its_own_timestamp() {
        let mut ranker = Ranker::new(Sampling::Fps(12.5), 1.0 / 25.0, Some(0), Some(25.0));
        for pts in 0..4 {
            ranker.on_packet(Some(pts)).unwrap();
        }
        let a = ranker.on_frame(Some(0), Some(0));
        let b = ranker.on_frame(Some(1), Some(1));
        // Frame 2 carries frame 1's time (0.04 s, slot 0 at 12.5 fps): not kept,
        // though its counted time (0.08 s) would open slot 1.
        let c = ranker.on_frame(Some(1), Some(1));
        assert_eq!((a.index, a.kept), (0, true));
        assert_eq!((b.index, b.kept), (1, false));
        assert_eq!(
            (c.index, c.kept, c.degraded),
            (2, false, Some(Degrade::UnknownTimestamp))
        );
        assert!(close(c.pts_s, 0.08));
        let d = ranker.on_frame(Some(3), Some(3));
        assert_eq!((d.index, d.kept), (3, true));
        assert!(close(d.pts_s, 0.12));
    }

    /// (c) Packet timestamps that repeat, or fall before a frame that already has its
    /// index, degrade at the packet; frames are then counted at the stated rate.
    #[test]
    fn repeated_or_late_packet_timestamps_degrade_to_counting() {
        let mut ranker = Ranker::new(Sampling::EveryNth(1), 1.0 / 25.0, Some(0), Some(25.0));
        assert_eq!(ranker.on_packet(Some(0)), Ok(()));
        assert_eq!(ranker.on_packet(Some(0)), Err(Degrade::OutOfOrder));
        assert!(!ranker.is_exact());

        let mut ranker = Ranker::new(Sampling::EveryNth(1), 1.0 / 25.0, Some(0), Some(25.0));
        for pts in [0, 1, 2, 3] {
            ranker.on_packet(Some(pts)).unwrap();
        }
        // Sending packet 2 with only 3 left in the look-ahead: 0, 1 and 2 are final.
        assert!(!ranker.skippable(Some(2), [Some(3)]));
        assert_eq!(
            ranker.on_packet(Some(2)),
            Err(Degrade::OutOfOrder),
            "a repeat"
        );
        let mut ranker = Ranker::new(Sampling::EveryNth(1), 1.0 / 25.0, Some(0), Some(25.0));
        for pts in [0, 2, 3] {
            ranker.on_packet(Some(pts)).unwrap();
        }
        ranker.finalize(Some(2));
        assert_eq!(
            ranker.on_packet(Some(1)),
            Err(Degrade::OutOfOrder),
            "shown before a ranked frame"
        );
        assert!(!ranker.skippable(Some(3), []));
        // Timestamps 0 and 2 keep the indices they were given before the degrade (0
        // and 1); 1 and 3 are counted on from there (2 and 3).
        let out: Vec<(u64, f64)> = [0, 1, 2, 3]
            .into_iter()
            .map(|pts| ranker.on_frame(Some(pts), Some(pts)))
            .map(|p| (p.index, p.pts_s))
            .collect();
        assert_eq!(out, vec![(0, 0.0), (2, 0.08), (1, 0.04), (3, 0.12)]);
    }

    /// (d) Frames the decoder dropped: taking a timestamp forgets every ranked entry
    /// before it, keeps the later ones, and a forgotten timestamp is unknown.
    #[test]
    fn take_forgets_the_entries_of_dropped_frames() {
        let mut ranker = Ranker::new(Sampling::EveryNth(2), 1.0 / 25.0, Some(0), Some(25.0));
        for pts in [0, 40, 10, 20, 30] {
            ranker.on_packet(Some(pts)).unwrap();
        }
        ranker.finalize(None);
        assert_eq!(ranker.next_index(), 5);
        assert_eq!(
            ranker.take(20),
            Some(Slot {
                index: 2,
                kept: true
            })
        );
        assert_eq!(ranker.take(0), None, "before 20: forgotten");
        assert_eq!(ranker.take(10), None, "before 20: forgotten");
        assert_eq!(ranker.take(20), None, "taken once");
        assert_eq!(
            ranker.take(40),
            Some(Slot {
                index: 4,
                kept: true
            })
        );
        assert_eq!(ranker.take(30), None, "skipped over by 40");
        assert!(ranker.is_exact());

        // Through on_frame: frames 10 and 30 were dropped by the decoder.
        let mut ranker = Ranker::new(Sampling::EveryNth(2), 1.0 / 25.0, Some(0), Some(25.0));
        for pts in [0, 40, 10, 20, 30] {
            ranker.on_packet(Some(pts)).unwrap();
        }
        let out: Vec<(u64, bool)> = [0, 20, 40]
            .into_iter()
            .map(|pts| ranker.on_frame(Some(pts), Some(pts)))
            .map(|p| (p.index, p.kept))
            .collect();
        assert_eq!(out, vec![(0, true), (2, true), (4, true)]);
        assert!(ranker.is_exact());
        // A late frame with a dropped frame's timestamp is not given its old index.
        let late = ranker.on_frame(Some(10), Some(10));
        assert_eq!(late.degraded, Some(Degrade::UnknownTimestamp));
        assert_eq!(late.index, 5);
    }
}
