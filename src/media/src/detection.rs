//! What a detector found, as plain data: detections in the coordinates of the picture
//! the model saw, cropped instance masks, the model's description and COCO's class
//! names. Shared by the engine (which produces them), the schema (which writes them)
//! and gifgen (which draws them); no LibTorch here.

use serde::{Deserialize, Serialize};

/// What the running model is, for outputs and logs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    /// Class names indexed by label id (COCO's 91 slots for COCO models).
    pub classes: Vec<String>,
    /// Whether the model produces instance masks.
    pub masks: bool,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Pictures per forward call.
    pub batch_size: usize,
    /// Seconds spent loading the file and running the warm-up forward.
    pub load_s: f64,
    /// Identifies the model file's contents (name, size and CRC-32): what a saved
    /// checkpoint is matched against, so results of another model are never mixed in.
    #[serde(default)]
    pub fingerprint: String,
    /// The size the model resizes every picture to itself, from its sidecar (absent
    /// when the sidecar does not say): what `resize=model` converts frames to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<ModelInput>,
}

/// A torchvision detector's input resize (`GeneralizedRCNNTransform`'s `min_size` and
/// `max_size`): the shorter side is scaled to `min_size` unless the longer would then
/// exceed `max_size`. See [`crate::video::model_size`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModelInput {
    pub min_size: u32,
    pub max_size: u32,
}

impl ModelInfo {
    /// The name of a label id (`class_N` when the model's list does not cover it).
    pub fn label(&self, id: i64) -> String {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.classes.get(i))
            .cloned()
            .unwrap_or_else(|| format!("class_{id}"))
    }
}

/// A binary instance mask, cropped to the part of the picture that holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropMask {
    pub x0: u32,
    pub y0: u32,
    pub width: u32,
    pub height: u32,
    /// Row-major 0/1 values, `width * height` of them (stored as alternating run
    /// lengths, zeros first).
    #[serde(with = "runs")]
    pub bits: Vec<u8>,
}

/// A 0/1 bitmap as alternating run lengths starting with zeros: compact for masks.
mod runs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(bits: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut counts = Vec::new();
        let (mut current, mut run) = (0u8, 0u32);
        for &b in bits {
            let b = u8::from(b != 0);
            if b != current {
                counts.push(run);
                (current, run) = (b, 0);
            }
            run += 1;
        }
        counts.push(run);
        counts.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let counts = Vec::<u32>::deserialize(d)?;
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if total > 1 << 28 {
            return Err(serde::de::Error::custom(
                "mask runs add up to too many pixels",
            ));
        }
        let mut bits = Vec::with_capacity(total as usize);
        for (i, &c) in counts.iter().enumerate() {
            bits.extend(std::iter::repeat_n((i % 2) as u8, c as usize));
        }
        Ok(bits)
    }
}

/// One detection in the coordinates of the picture the model saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub label_id: i64,
    pub score: f32,
    /// x1, y1, x2, y2 in picture pixels.
    pub bbox: [f32; 4],
    pub mask: Option<CropMask>,
    /// The object's identity across sampled frames, set by the engine's tracker
    /// ([`crate::track`]) after the model; `None` when not tracked.
    pub track_id: Option<u64>,
}

/// COCO's 91 label slots as torchvision numbers them (index = label id).
pub const COCO_CLASSES: [&str; 91] = [
    "__background__",
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "N/A",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "N/A",
    "backpack",
    "umbrella",
    "N/A",
    "N/A",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "N/A",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "N/A",
    "dining table",
    "N/A",
    "N/A",
    "toilet",
    "N/A",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "N/A",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_round_trip_through_their_runs() {
        for bits in [vec![], vec![1, 1, 0], vec![0, 0, 1, 0, 1, 1, 1], vec![1; 9]] {
            let m = CropMask {
                x0: 1,
                y0: 2,
                width: bits.len() as u32,
                height: 1,
                bits: bits.clone(),
            };
            let json = serde_json::to_string(&m).unwrap();
            let back: CropMask = serde_json::from_str(&json).unwrap();
            assert_eq!(back, m, "{json}");
        }
        let json = r#"{"x0":0,"y0":0,"width":3,"height":1,"bits":[0,2,1]}"#;
        assert_eq!(
            serde_json::from_str::<CropMask>(json).unwrap().bits,
            [1, 1, 0]
        );
        let huge = r#"{"x0":0,"y0":0,"width":1,"height":1,"bits":[4000000000,4000000000]}"#;
        assert!(serde_json::from_str::<CropMask>(huge).is_err());
    }
}
