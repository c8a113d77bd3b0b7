//! S3: `s3://` locations, listings, streaming downloads into a temp file under a size
//! limit, and uploads (one PUT, or multipart above [`MULTIPART_THRESHOLD`]). Uploads to
//! the same key overwrite, so a redelivered request writes the same object again.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::AsyncWriteExt;

use crate::aws::{classify, ErrorKind};

/// Outputs larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
/// Size of each part of a multipart upload (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Temp files of downloads start with this.
pub const DOWNLOAD_PREFIX: &str = "vidinfer-input-";
/// Temp files of request bodies (`serve`) start with this.
pub const REQUEST_PREFIX: &str = "vidinfer-request-";

/// A new temp file in `dir` named `prefix…`, deleted when dropped and locked (`flock`)
/// while it lives, so [`sweep_stale_temp_files`] can tell it from one a killed process
/// left behind. A sweep may catch the file between its creation and its lock and remove
/// it: the lock is then on a file no longer at that path, which is checked, and a new
/// file is made.
pub fn locked_temp_file(dir: &Path, prefix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::MetadataExt;
    for _ in 0..5 {
        let tmp = tempfile::Builder::new().prefix(prefix).tempfile_in(dir)?;
        lock_exclusive(tmp.as_file(), false)?;
        let held = tmp.as_file().metadata()?;
        match std::fs::metadata(tmp.path()) {
            Ok(at_path) if (at_path.dev(), at_path.ino()) == (held.dev(), held.ino()) => {
                return Ok(tmp)
            }
            _ => continue, // swept in that instant
        }
    }
    Err(std::io::Error::other(format!(
        "temp files in {} keep disappearing",
        dir.display()
    )))
}

/// An object downloaded into a temp file (deleted when this is dropped).
#[derive(Debug)]
pub struct Downloaded {
    pub file: tempfile::NamedTempFile,
    /// Bytes written.
    pub bytes: u64,
    /// The object's ETag as S3 gave it (quotes included), when it gave one.
    pub etag: Option<String>,
}

/// `flock` on `file`: exclusive, blocking or not. The lock lives as long as the open
/// file and dies with the process, whatever kills it.
fn lock_exclusive(file: &std::fs::File, nonblocking: bool) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let op = libc::LOCK_EX | if nonblocking { libc::LOCK_NB } else { 0 };
    // SAFETY: flock on a file descriptor this `File` owns and keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Remove the temp files of downloads and request bodies in `dir` that no live process
/// holds: those a killed worker left behind (live ones are locked, see
/// [`locked_temp_file`]). Returns how many were removed; errors on single files are
/// skipped.
pub fn sweep_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let is_ours = name
            .to_str()
            .is_some_and(|n| n.starts_with(DOWNLOAD_PREFIX) || n.starts_with(REQUEST_PREFIX));
        if !is_ours || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = e.path();
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        // Held by a live process: leave it. Free: its owner is gone (or has not locked
        // it yet, which locked_temp_file notices), so remove it while holding the lock.
        if lock_exclusive(&file, true).unwrap_or(false) && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A bucket and a key (or key prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl std::fmt::Display for S3Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl std::str::FromStr for S3Uri {
    type Err = StorageError;

    /// `s3://bucket/key`; the key may be empty (a bucket-level prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| StorageError::InvalidUri {
            uri: s.chars().take(200).collect(),
            reason: why.to_string(),
        };
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad("the bucket name is not a valid S3 bucket name"));
        }
        if key.len() > 1024 || key.chars().any(char::is_control) {
            return Err(bad(
                "the key is longer than 1024 bytes or has control characters",
            ));
        }
        Ok(S3Uri {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

impl S3Uri {
    /// This location treated as a prefix, with `name` appended after a `/`.
    pub fn join(&self, name: &str) -> S3Uri {
        let key = if self.key.is_empty() || self.key.ends_with('/') {
            format!("{}{name}", self.key)
        } else {
            format!("{}/{name}", self.key)
        };
        S3Uri {
            bucket: self.bucket.clone(),
            key,
        }
    }
}

/// What can go wrong talking to S3.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("`{uri}` is not an S3 location: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("{uri} does not exist")]
    NotFound { uri: String },
    #[error("access to {uri} was denied: {message}")]
    Denied { uri: String, message: String },
    #[error("{uri} is {size} bytes, over the limit of {max} bytes")]
    TooLarge { uri: String, size: u64, max: u64 },
    #[error("S3 {op} of {uri} failed (transient): {message}")]
    Transient {
        op: &'static str,
        uri: String,
        message: String,
    },
    #[error("S3 {op} of {uri} failed: {message}")]
    Failed {
        op: &'static str,
        uri: String,
        message: String,
    },
    #[error("local file error: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// True when retrying may succeed (throttling, 5xx, network, local disk).
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Transient { .. } | StorageError::Io(_))
    }

    fn from_sdk<E>(op: &'static str, uri: &S3Uri, err: &aws_sdk_s3::error::SdkError<E>) -> Self
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (kind, message) = classify(err);
        let uri = uri.to_string();
        match kind {
            ErrorKind::NotFound => StorageError::NotFound { uri },
            ErrorKind::Denied => StorageError::Denied { uri, message },
            ErrorKind::Transient => StorageError::Transient { op, uri, message },
            ErrorKind::Other => StorageError::Failed { op, uri, message },
        }
    }
}

/// An S3 client.
#[derive(Clone, Debug)]
pub struct Storage {
    client: aws_sdk_s3::Client,
}

impl Storage {
    pub fn new(sdk: &aws_config::SdkConfig) -> Storage {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(crate::aws::has_endpoint_override(sdk))
            .build();
        Storage {
            client: aws_sdk_s3::Client::from_conf(conf),
        }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Whether the bucket of `uri` exists and these credentials reach it (HEAD bucket):
    /// a misspelt destination found before hours of work rather than after.
    pub async fn check_bucket(&self, uri: &S3Uri) -> Result<(), StorageError> {
        let bucket = S3Uri {
            bucket: uri.bucket.clone(),
            key: String::new(),
        };
        self.client
            .head_bucket()
            .bucket(&uri.bucket)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("HEAD", &bucket, &e))?;
        Ok(())
    }

    /// The objects directly under `prefix` (its key is taken as it is, so
    /// `s3://bucket/in/` lists `in/a.mp4` but neither `in/sub/b.mp4` nor `input.mp4`),
    /// with their sizes, in key order. "Directory" placeholder objects (keys ending in
    /// `/`) are left out.
    pub async fn list(&self, prefix: &S3Uri) -> Result<Vec<(S3Uri, u64)>, StorageError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&prefix.bucket)
                .prefix(&prefix.key)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| StorageError::from_sdk("LIST", prefix, &e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                if key.ends_with('/') {
                    continue;
                }
                let uri = S3Uri {
                    bucket: prefix.bucket.clone(),
                    key: key.to_string(),
                };
                found.push((uri, o.size().unwrap_or(0).max(0) as u64));
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        Ok(found)
    }

    /// Start reading an object, refusing it when its declared length is over the limit.
    async fn get(
        &self,
        uri: &S3Uri,
        max_bytes: u64,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StorageError> {
        let resp = self
            .client
            .get_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("GET", uri, &e))?;
        let declared = resp.content_length().unwrap_or(0).max(0) as u64;
        if declared > max_bytes {
            return Err(StorageError::TooLarge {
                uri: uri.to_string(),
                size: declared,
                max: max_bytes,
            });
        }
        Ok(resp)
    }

    /// Stream an object into a new temp file in `dir`, refusing objects larger than
    /// `max_bytes` (checked on the declared length before anything is read, and again
    /// while reading). The file is deleted when the returned handle is dropped, and
    /// locked while it lives (see [`locked_temp_file`]).
    pub async fn download(
        &self,
        uri: &S3Uri,
        dir: &Path,
        max_bytes: u64,
    ) -> Result<Downloaded, StorageError> {
        let resp = self.get(uri, max_bytes).await?;
        let etag = resp.e_tag().map(str::to_string);
        let tmp = locked_temp_file(dir, DOWNLOAD_PREFIX)?;
        let mut file = tokio::fs::File::from_std(tmp.reopen()?);
        let mut body = resp.body;
        let mut written = 0u64;
        loop {
            let chunk = body.try_next().await.map_err(|e| StorageError::Transient {
                op: "GET",
                uri: uri.to_string(),
                message: e.to_string(),
            })?;
            let Some(chunk) = chunk else { break };
            written += chunk.len() as u64;
            if written > max_bytes {
                return Err(StorageError::TooLarge {
                    uri: uri.to_string(),
                    size: written,
                    max: max_bytes,
                });
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(Downloaded {
            file: tmp,
            bytes: written,
            etag,
        })
    }

    /// Read a whole (small) object into memory, refusing more than `max_bytes`.
    pub async fn get_bytes(&self, uri: &S3Uri, max_bytes: u64) -> Result<Vec<u8>, StorageError> {
        let resp = self.get(uri, max_bytes).await?;
        let data = resp
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Transient {
                op: "GET",
                uri: uri.to_string(),
                message: e.to_string(),
            })?;
        Ok(data.into_bytes().to_vec())
    }

    /// Delete an object (deleting one that does not exist succeeds, as on S3).
    pub async fn delete(&self, uri: &S3Uri) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("DELETE", uri, &e))?;
        Ok(())
    }

    /// Write an object (overwriting), in parts when it is large.
    pub async fn put(
        &self,
        uri: &S3Uri,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        if body.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(uri, body, content_type).await;
        }
        self.client
            .put_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("PUT", uri, &e))?;
        Ok(())
    }

    /// Create an object only if none exists at `uri` (an S3 conditional write,
    /// `If-None-Match: *`): `Ok(true)` when this call created it, `Ok(false)` when one
    /// was already there (HTTP 412). Of several concurrent callers exactly one gets
    /// `true`; a conflict with a write still in flight (HTTP 409) is transient.
    pub async fn put_if_absent(
        &self,
        uri: &S3Uri,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<bool, StorageError> {
        let sent = self
            .client
            .put_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .content_type(content_type)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(412) => Ok(false),
                Some(409) => Err(StorageError::Transient {
                    op: "conditional PUT",
                    uri: uri.to_string(),
                    message: classify(&e).1,
                }),
                _ => Err(StorageError::from_sdk("conditional PUT", uri, &e)),
            },
        }
    }

    async fn put_multipart(
        &self,
        uri: &S3Uri,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("multipart start", uri, &e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            for (i, chunk) in body.chunks(PART_SIZE).enumerate() {
                let n = i as i32 + 1;
                let part = self
                    .client
                    .upload_part()
                    .bucket(&uri.bucket)
                    .key(&uri.key)
                    .upload_id(&upload_id)
                    .part_number(n)
                    .body(ByteStream::from(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| StorageError::from_sdk("multipart part", uri, &e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(part.e_tag().map(str::to_string))
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(&uri.bucket)
                .key(&uri.key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| StorageError::from_sdk("multipart complete", uri, &e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // Leave no orphaned parts behind (best effort; a lifecycle rule is the backstop).
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&uri.bucket)
                .key(&uri.key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sweep_removes_unlocked_temp_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, age_s: u64| {
            let path = dir.path().join(name);
            let f = std::fs::File::create(&path).unwrap();
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
            f.set_modified(t).unwrap();
            path
        };
        let stale = make("vidinfer-input-stale", 3600);
        let body = make("vidinfer-request-stale", 0);
        let other = make("notes.txt", 3600);
        // A live download holds its lock on its own open file.
        let live = locked_temp_file(dir.path(), DOWNLOAD_PREFIX).unwrap();
        assert_eq!(sweep_stale_temp_files(dir.path()), 2);
        assert!(!stale.exists() && !body.exists());
        assert!(live.path().exists() && other.exists());
        // What a killed process leaves: the file, no lock.
        let (file, path) = live.keep().unwrap();
        drop(file);
        assert_eq!(sweep_stale_temp_files(dir.path()), 1, "released: now stale");
        assert!(!path.exists());
    }

    use super::*;

    #[test]
    fn s3_uris_parse_join_and_reject() {
        let u: S3Uri = "s3://my-bucket/in/video.mp4".parse().unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.key.as_str()),
            ("my-bucket", "in/video.mp4")
        );
        assert_eq!(u.to_string(), "s3://my-bucket/in/video.mp4");
        let p: S3Uri = "s3://out-bucket".parse().unwrap();
        assert_eq!(p.join("abc.out").to_string(), "s3://out-bucket/abc.out");
        let p: S3Uri = "s3://out-bucket/results/".parse().unwrap();
        assert_eq!(p.join("abc.out").key, "results/abc.out");
        let p: S3Uri = "s3://out-bucket/results".parse().unwrap();
        assert_eq!(p.join("abc.out").key, "results/abc.out");
        for bad in [
            "http://x/y",
            "s3://",
            "s3://A_B/key",
            "/etc/passwd",
            "s3://ab/k",
        ] {
            assert!(bad.parse::<S3Uri>().is_err(), "{bad}");
        }
    }
}
