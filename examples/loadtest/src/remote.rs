//! The real deployments: an SQS queue served by standalone workers (scaled by KEDA or
//! anything else) and a SageMaker asynchronous endpoint (scaled by its Application Auto
//! Scaling policies). The load test only sends requests and watches: it never changes
//! the deployment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::{self, check_queue, describe, parse_s3_uri, AwsOptions};
use crate::observe::{Instances, Observers, Workers};
use crate::record::Recorder;
use crate::run::{self, Inboxes, Output, Plan};
use crate::summary::{RunInfo, Summary};
use crate::target::{RequestTemplate, Target};

/// What both remote modes need.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub aws: AwsOptions,
    /// `s3://bucket/key` of the video every request names.
    pub input: String,
    pub custom_attributes: Option<String>,
    pub content_type: String,
    /// Queues subscribed to the success and error topics, for the load test alone.
    pub success_inbox: String,
    pub error_inbox: String,
}

async fn prepare(
    cfg: &RemoteConfig,
    sdk: &aws_config::SdkConfig,
    out: &Output,
) -> anyhow::Result<Inboxes> {
    out.prepare()?;
    let (bucket, key) = parse_s3_uri(&cfg.input)?;
    if let Err(e) = aws::s3(sdk)
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
    {
        let missing = e.as_service_error().is_some_and(|se| se.is_not_found());
        anyhow::ensure!(
            !missing,
            "the input {} does not exist: upload the video first or fix --input",
            cfg.input
        );
        eprintln!(
            "[loadtest] cannot check that {} exists ({}); going on",
            cfg.input,
            describe(&e)
        );
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    check_queue(&sqs, &cfg.success_inbox, "--success-queue").await?;
    check_queue(&sqs, &cfg.error_inbox, "--error-queue").await?;
    Ok(Inboxes {
        sqs,
        success: cfg.success_inbox.clone(),
        error: cfg.error_inbox.clone(),
    })
}

fn request(cfg: &RemoteConfig) -> RequestTemplate {
    RequestTemplate {
        input: cfg.input.clone(),
        custom_attributes: cfg.custom_attributes.clone(),
        content_type: cfg.content_type.clone(),
    }
}

/// Load an SQS queue of standalone workers.
pub async fn run_sqs(
    cfg: &RemoteConfig,
    queue_url: &str,
    workers_command: Option<String>,
    plan: &Plan,
    out: &Output,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let sdk = aws::sdk(&cfg.aws).await;
    let inboxes = prepare(cfg, &sdk, out).await?;
    check_queue(&inboxes.sqs, queue_url, "--queue-url").await?;
    let target = Arc::new(Target::Sqs {
        sqs: inboxes.sqs.clone(),
        queue_url: queue_url.to_string(),
        request: request(cfg),
    });
    let observers = Observers {
        queue: Some((inboxes.sqs.clone(), queue_url.to_string())),
        workers: match workers_command {
            Some(command) => Workers::Command {
                command,
                warned: false,
            },
            None => Workers::None,
        },
        instances: None,
    };
    drive_and_finish(
        "sqs", queue_url, plan, target, &inboxes, observers, out, started,
    )
    .await
}

/// Load a SageMaker asynchronous endpoint.
pub async fn run_sagemaker(
    cfg: &RemoteConfig,
    endpoint: &str,
    variant: &str,
    plan: &Plan,
    out: &Output,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let sdk = aws::sdk(&cfg.aws).await;
    let inboxes = prepare(cfg, &sdk, out).await?;
    let target = Arc::new(Target::SageMaker {
        client: aws_sdk_sagemakerruntime::Client::new(&sdk),
        endpoint: endpoint.to_string(),
        request: request(cfg),
    });
    let instances = Instances::new(&sdk, endpoint, variant, Duration::from_secs(10));
    eprintln!(
        "[loadtest] instance count from the scaling activities of {}",
        instances.resource_id()
    );
    let observers = Observers {
        queue: None,
        workers: Workers::None,
        instances: Some(instances),
    };
    drive_and_finish(
        "sagemaker",
        endpoint,
        plan,
        target,
        &inboxes,
        observers,
        out,
        started,
    )
    .await
}

/// Run the plan against a remote target and write the run's files.
#[allow(clippy::too_many_arguments)]
async fn drive_and_finish(
    mode: &str,
    target_name: &str,
    plan: &Plan,
    target: Arc<Target>,
    inboxes: &Inboxes,
    observers: Observers,
    out: &Output,
    started: Instant,
) -> anyhow::Result<Summary> {
    let rec = Arc::new(Recorder::new());
    let ending = run::drive(plan, target, inboxes, observers, None, rec.clone()).await;
    run::finish(
        out,
        RunInfo {
            mode: mode.into(),
            target: target_name.to_string(),
            shape: plan.shape.to_string(),
            planned: plan.count,
            ended_by: ending.as_str().into(),
            ..RunInfo::default()
        },
        &rec,
        started,
    )
}
