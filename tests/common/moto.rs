//! A moto server on a free loopback port (S3, SQS, SNS over the real wire protocol),
//! with helpers that create uniquely named resources and read notifications back.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;

/// A running moto server, stopped when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("vidinfer-moto-{port}.log")))
                .unwrap();
        let child = Command::new(super::venv_python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moto (scripts/setup.sh installs it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, endpoint }
    }

    /// An SDK config pointing every service at this server.
    pub async fn sdk(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await
    }

    /// Environment for a worker process talking to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            // boto3 (the Python reference of the benchmarks) reads this one.
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique, valid resource name.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Everything one test's worker needs.
pub struct Resources {
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub success_topic: String,
    pub error_topic: String,
    /// SQS queues subscribed to the topics, to read notifications from.
    pub success_inbox: String,
    pub error_inbox: String,
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

impl Resources {
    /// A bucket, a work queue with a DLQ after `max_receive` receives, success and
    /// error topics, each subscribed by an inbox queue.
    pub async fn create(sdk: &SdkConfig, max_receive: u32) -> Resources {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(true)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let sns = aws_sdk_sns::Client::new(sdk);
        let bucket = unique("vidinfer-test");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let dlq_url = sqs
            .create_queue()
            .queue_name(unique("dlq"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let redrive =
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive}"}}"#);
        let queue_url = sqs
            .create_queue()
            .queue_name(unique("jobs"))
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let mut topics = Vec::new();
        let mut inboxes = Vec::new();
        for name in ["success", "error"] {
            let topic = sns
                .create_topic()
                .name(unique(name))
                .send()
                .await
                .unwrap()
                .topic_arn
                .unwrap();
            let inbox = sqs
                .create_queue()
                .queue_name(unique(&format!("{name}-inbox")))
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            let arn = queue_arn(&sqs, &inbox).await;
            sns.subscribe()
                .topic_arn(&topic)
                .protocol("sqs")
                .endpoint(arn)
                .send()
                .await
                .unwrap();
            topics.push(topic);
            inboxes.push(inbox);
        }
        Resources {
            bucket,
            queue_url,
            dlq_url,
            success_topic: topics[0].clone(),
            error_topic: topics[1].clone(),
            success_inbox: inboxes[0].clone(),
            error_inbox: inboxes[1].clone(),
        }
    }
}

/// A moto server, its SDK config, and resources with the sample video uploaded to
/// `s3://{bucket}/in/shapes.mp4`: the start of every worker test.
pub async fn with_sample_video(max_receive: u32) -> (Moto, SdkConfig, Resources) {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let res = Resources::create(&sdk, max_receive).await;
    let video = std::fs::read(super::sample_video()).unwrap();
    upload(&sdk, &res.bucket, "in/shapes.mp4", video).await;
    (moto, sdk, res)
}

pub fn s3(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

pub async fn upload(sdk: &SdkConfig, bucket: &str, key: &str, body: Vec<u8>) {
    s3(sdk)
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

/// The object's bytes, or None when it does not exist.
pub async fn download(sdk: &SdkConfig, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let r = s3(sdk)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(r.body.collect().await.unwrap().into_bytes().to_vec())
}

pub async fn list_keys(sdk: &SdkConfig, bucket: &str) -> Vec<String> {
    let r = s3(sdk)
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    r.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

pub async fn send(sdk: &SdkConfig, queue_url: &str, body: &str) {
    aws_sdk_sqs::Client::new(sdk)
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

/// (visible, in flight) message counts.
pub async fn depth(sdk: &SdkConfig, queue_url: &str) -> (u64, u64) {
    let r = aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let a = r.attributes().unwrap();
    let n = |k: &QueueAttributeName| a.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        n(&QueueAttributeName::ApproximateNumberOfMessages),
        n(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Read notifications (SNS envelopes on an inbox queue) until `n` have arrived or
/// `timeout` passes; returns the parsed `Message` JSON of each.
pub async fn notifications(
    sdk: &SdkConfig,
    inbox: &str,
    n: usize,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < n && start.elapsed() < timeout {
        let r = sqs
            .receive_message()
            .queue_url(inbox)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in r.messages() {
            let envelope: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let message = envelope["Message"].as_str().expect("an SNS envelope");
            out.push(serde_json::from_str(message).unwrap());
            sqs.delete_message()
                .queue_url(inbox)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    out
}

/// Start `vidinfer-worker sqs` (the binary at `exe`) on `res`'s queue with the fixture
/// model, results under `s3://{bucket}/results`, AWS reached through `env` (see
/// [`Moto::env`]); its log goes to a temp file.
pub fn spawn_sqs_worker(
    exe: &std::path::Path,
    env: &[(&'static str, String)],
    res: &Resources,
    extra: &[&str],
) -> Child {
    let log = std::env::temp_dir().join(format!("{}.log", unique("vidinfer-worker")));
    spawn_sqs_worker_logged(exe, env, res, extra, &log)
}

/// [`spawn_sqs_worker`] with its stderr written to `log`.
pub fn spawn_sqs_worker_logged(
    exe: &std::path::Path,
    env: &[(&'static str, String)],
    res: &Resources,
    extra: &[&str],
    log: &std::path::Path,
) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg("sqs");
    if !extra.contains(&"--model") {
        cmd.args(["--model", super::fixture_model().to_str().unwrap()]);
    }
    cmd.args(["--queue-url", &res.queue_url])
        .args(["--output-path", &format!("s3://{}/results", res.bucket)])
        .args(["--success-topic", &res.success_topic])
        .args(["--error-topic", &res.error_topic])
        .args(["--wait-time", "1"]);
    if !extra.contains(&"--metrics-addr") {
        cmd.args(["--metrics-addr", "off"]);
    }
    cmd.args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn vidinfer-worker")
}
