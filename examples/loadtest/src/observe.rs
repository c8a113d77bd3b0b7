//! What the sampler reads while the run goes on: the job queue's depth, the size of
//! the fleet (the local autoscaler's workers, a command the caller gives, or the
//! SageMaker variant's instance count from Application Auto Scaling's activities).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_applicationautoscaling::types::{
    ScalableDimension, ScalingActivityStatusCode, ServiceNamespace,
};

use crate::aws::{describe, queue_depth};
use crate::record::Sample;

/// The local fleet as the autoscaler last left it.
#[derive(Debug, Default)]
pub struct FleetStatus {
    /// Worker processes alive (draining ones included).
    pub alive: AtomicU32,
    /// Workers the autoscaler wants.
    pub desired: AtomicU32,
}

impl FleetStatus {
    pub fn get(&self) -> (u32, u32) {
        (
            self.alive.load(Ordering::Relaxed),
            self.desired.load(Ordering::Relaxed),
        )
    }
}

/// Where the worker count comes from.
#[derive(Debug)]
pub enum Workers {
    /// Not observed.
    None,
    /// The local autoscaler's fleet.
    Local(Arc<FleetStatus>),
    /// A shell command that prints the count (e.g. `kubectl get deploy ... -o
    /// jsonpath={.status.replicas}`).
    Command { command: String, warned: bool },
}

/// A SageMaker variant's instance count, from its scaling activities.
#[derive(Debug)]
pub struct Instances {
    client: aws_sdk_applicationautoscaling::Client,
    resource_id: String,
    /// Application Auto Scaling's Describe calls are rate-limited: at most one per
    /// `every`, the value held in between.
    every: Duration,
    last: Option<(Instant, Option<u32>)>,
    warned: bool,
}

impl Instances {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        endpoint: &str,
        variant: &str,
        every: Duration,
    ) -> Instances {
        Instances {
            client: aws_sdk_applicationautoscaling::Client::new(sdk),
            resource_id: format!("endpoint/{endpoint}/variant/{variant}"),
            every,
            last: None,
            warned: false,
        }
    }

    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    /// The desired count set by the latest successful activity, or None when the
    /// variant has no activity on record (or it cannot be read).
    pub async fn read(&mut self) -> Option<u32> {
        if let Some((at, v)) = self.last {
            if at.elapsed() < self.every {
                return v;
            }
        }
        let r = self
            .client
            .describe_scaling_activities()
            .service_namespace(ServiceNamespace::Sagemaker)
            .resource_id(&self.resource_id)
            .scalable_dimension(ScalableDimension::SageMakerVariantDesiredInstanceCount)
            .max_results(50)
            .send()
            .await;
        let v = match r {
            Ok(out) => out
                .scaling_activities()
                .iter()
                .filter(|a| *a.status_code() == ScalingActivityStatusCode::Successful)
                .max_by_key(|a| a.end_time().unwrap_or(a.start_time()).secs())
                .and_then(|a| {
                    desired_count(a.status_message().unwrap_or(""))
                        .or_else(|| desired_count(a.description()))
                }),
            Err(e) => {
                if !self.warned {
                    eprintln!(
                        "[loadtest] the scaling activities of {} cannot be read (the instance count will be missing): {}",
                        self.resource_id,
                        describe(&e)
                    );
                    self.warned = true;
                }
                None
            }
        };
        self.last = Some((Instant::now(), v));
        v
    }
}

/// The instance count an activity set: "Setting desired instance count to 3." or
/// "Successfully set desired instance count to 3. Change successfully fulfilled by
/// sagemaker."
pub fn desired_count(text: &str) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    let at = lower.rfind("count to ").map(|i| i + "count to ".len())?;
    let digits: String = lower[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Everything the sampler reads.
#[derive(Debug)]
pub struct Observers {
    /// The job queue (SQS modes).
    pub queue: Option<(aws_sdk_sqs::Client, String)>,
    pub workers: Workers,
    pub instances: Option<Instances>,
}

impl Observers {
    /// Take one reading; whatever cannot be read is left out.
    pub async fn sample(&mut self) -> Sample {
        let mut s = Sample::default();
        if let Some((sqs, url)) = &self.queue {
            if let Ok((v, n)) = queue_depth(sqs, url).await {
                s.visible = Some(v);
                s.not_visible = Some(n);
            }
        }
        match &mut self.workers {
            Workers::None => {}
            Workers::Local(status) => {
                let (alive, desired) = status.get();
                s.workers = Some(alive);
                s.desired = Some(desired);
            }
            Workers::Command { command, warned } => match run_count(command).await {
                Ok(n) => s.workers = Some(n),
                Err(e) => {
                    if !*warned {
                        eprintln!("[loadtest] --workers-command failed (the worker count will be missing): {e}");
                        *warned = true;
                    }
                }
            },
        }
        if let Some(i) = &mut self.instances {
            s.instances = i.read().await;
        }
        s
    }
}

/// Run `command` with `sh -c` and read a count from what it prints.
async fn run_count(command: &str) -> anyhow::Result<u32> {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new("sh")
            .args(["-c", command])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("`{command}` took longer than 10 s"))??;
    anyhow::ensure!(
        out.status.success(),
        "`{command}` exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let t = text.trim().trim_matches('\'');
    // `kubectl ... jsonpath={.status.replicas}` prints nothing when there are none.
    if t.is_empty() {
        return Ok(0);
    }
    t.parse()
        .map_err(|_| anyhow::anyhow!("`{command}` printed `{t}`, not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_count_an_activity_set() {
        assert_eq!(
            desired_count("Setting desired instance count to 3."),
            Some(3)
        );
        assert_eq!(
            desired_count("Successfully set desired instance count to 0. Change successfully fulfilled by sagemaker."),
            Some(0)
        );
        assert_eq!(desired_count("Failed to set capacity"), None);
    }

    #[tokio::test]
    async fn a_command_prints_the_worker_count() {
        assert_eq!(run_count("echo 3").await.unwrap(), 3);
        assert_eq!(run_count("printf ''").await.unwrap(), 0);
        assert!(run_count("echo many").await.is_err());
        assert!(run_count("exit 2").await.is_err());
    }
}
