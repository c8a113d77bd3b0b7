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
#[derive(Debug, Clone, PartialEq)]
pub struct CropMask {
    pub x0: u32,
    pub y0: u32,
    pub width: u32,
    pub height: u32,
    /// Row-major 0/1 values, `width * height` of them.
    pub bits: Vec<u8>,
}

/// One detection in the coordinates of the picture the model saw.
#[derive(Debug, Clone, PartialEq)]
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
