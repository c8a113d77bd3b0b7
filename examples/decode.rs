//! Decode a video with vidinfer's sampler and print what was kept.
//!
//! `cargo run --release --example decode -- VIDEO [INTERVAL] [--no-skip] [--threads N]`

use vidinfer::video::{DecodeOptions, Decoder, Resize, Sampling};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or_else(|| {
        anyhow::anyhow!("usage: decode VIDEO [INTERVAL] [--no-skip] [--threads N]")
    })?;
    let interval = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(0);
    let opts = DecodeOptions {
        sampling: Sampling::EveryNth(interval),
        resize: Resize::Original,
        skip_non_ref: !args.iter().any(|a| a == "--no-skip"),
        threads,
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let mut dec = Decoder::open(std::path::Path::new(path), opts)?;
    println!("{:?}", dec.info());
    let mut kept = Vec::new();
    while let Some(f) = dec.next_frame()? {
        kept.push((f.meta.index, f.meta.pts_s));
    }
    println!("kept {} frames: {:?}", kept.len(), kept);
    println!(
        "decoded {} pictures in {:.3} s; indices from timestamps: {}",
        dec.frames_decoded(),
        start.elapsed().as_secs_f64(),
        dec.indices_from_timestamps()
    );
    Ok(())
}
