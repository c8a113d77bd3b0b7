//! Where inputs come from: local files and `s3://bucket/key` objects (through
//! vidinfer's storage module and the usual AWS credential chain; `AWS_ENDPOINT_URL`
//! is honoured). http(s) locations are refused with a clear message.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use vidinfer_media::video::Source;

/// Schemes gifgen recognises as remote locations.
const REMOTE_SCHEMES: [&str; 2] = ["http://", "https://"];

/// Largest predictions document read from S3.
const MAX_PREDICTIONS_BYTES: u64 = 512 << 20;
/// Largest video read from S3.
const MAX_VIDEO_BYTES: u64 = 8 << 30;

fn s3_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn s3_uri(location: &str) -> Result<vidinfer_aws::storage::S3Uri> {
    location
        .parse()
        .with_context(|| format!("reading {location}"))
}

fn refuse_remote(location: &str) -> Result<()> {
    if let Some(scheme) = REMOTE_SCHEMES.iter().find(|s| location.starts_with(**s)) {
        bail!(
            "{location}: {} locations are not supported yet; download the file first \
             and pass its local path (or an s3:// location)",
            scheme.trim_end_matches("://")
        );
    }
    Ok(())
}

/// The bytes of an input (the predictions JSON).
pub fn read_input(location: &str) -> Result<Vec<u8>> {
    refuse_remote(location)?;
    if location.starts_with("s3://") {
        let uri = s3_uri(location)?;
        return s3_runtime()?.block_on(async {
            let sdk = vidinfer_aws::aws::load(&Default::default()).await;
            let storage = vidinfer_aws::storage::Storage::new(&sdk);
            Ok(storage.get_bytes(&uri, MAX_PREDICTIONS_BYTES).await?)
        });
    }
    std::fs::read(location).with_context(|| format!("reading {location}"))
}

/// A source the decoder can open for the video at `location`.
/// An S3 video is downloaded to a temp file that lives as long as the returned guard.
pub fn video_source(location: &str) -> Result<(Source, Option<tempfile::NamedTempFile>)> {
    refuse_remote(location)?;
    if location.starts_with("s3://") {
        let uri = s3_uri(location)?;
        let file = s3_runtime()?.block_on(async {
            let sdk = vidinfer_aws::aws::load(&Default::default()).await;
            vidinfer_aws::storage::Storage::new(&sdk)
                .download(&uri, &std::env::temp_dir(), MAX_VIDEO_BYTES)
                .await
                .map(|d| d.file)
        })?;
        return Ok((Source::Path(file.path().to_path_buf()), Some(file)));
    }
    let path = Path::new(location);
    ensure!(
        path.is_file(),
        "the video {location} {}",
        if path.exists() {
            "is not a file"
        } else {
            "does not exist"
        }
    );
    Ok((Source::Path(path.to_path_buf()), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_are_read_and_remote_locations_refused_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let f = dir.join("p.json");
        std::fs::write(&f, b"[]").unwrap();
        assert_eq!(read_input(f.to_str().unwrap()).unwrap(), b"[]");
        assert!(matches!(video_source(f.to_str().unwrap()).unwrap().0, Source::Path(p) if p == f));
        let e = read_input("https://example.com/p.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("https locations are not supported yet"), "{e}");
        assert!(video_source("https://example.com/v.mp4").is_err());
        assert!(
            read_input("s3://A_B/k").is_err(),
            "an invalid bucket is refused"
        );
        let e = video_source(dir.to_str().unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is not a file"), "{e}");
        let e = format!(
            "{:#}",
            read_input(dir.join("missing.json").to_str().unwrap()).unwrap_err()
        );
        assert!(
            e.contains("missing.json") && e.contains("No such file"),
            "{e}"
        );
    }
}
