//! The TTL-after-finished controller: deletes a finished Job (`Complete` or `Failed`)
//! `spec.ttlSecondsAfterFinished` seconds after it finished, with Background propagation so the
//! garbage collector removes its pods.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Preconditions};
use kube::Api;

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::job::util;
use crate::key::ObjectKey;
use crate::queue::WorkQueue;
use crate::runner;

/// Why a Job could not be cleaned up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Re-reading the Job before deleting it failed.
    #[error("reading job {job}: {source}")]
    Get {
        /// The Job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting the Job failed.
    #[error("deleting job {job}: {source}")]
    Delete {
        /// The Job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// When a Job expires: its finish time plus its TTL; `None` if it has no TTL or is not finished.
pub fn expire_at(job: &Job) -> Option<jiff::Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = job.status.as_ref()?;
    let conditions = status.conditions.as_deref().unwrap_or_default();
    if !util::is_finished(conditions) {
        return None;
    }
    let finished =
        util::finish_time(conditions).or_else(|| status.completion_time.as_ref().map(|t| t.0))?;
    Some(finished + jiff::SignedDuration::from_secs(i64::from(ttl)))
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    jobs: Informer<Job>,
}

/// Starts the TTL-after-finished controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        jobs: ctx.informers.get::<Job>(),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.jobs.ready().await;
        runner::forward(&controller.jobs, queue.clone(), |change| match change {
            Change::Applied { new, .. } if expire_at(new).is_some() => {
                vec![ObjectKey::of(new.as_ref())]
            }
            _ => Vec::new(),
        });
        let worker = controller.clone();
        runner::spawn_workers(
            "ttl-after-finished",
            queue,
            controller.ctx.settings.workers.ttl_after_finished,
            move |key| {
                let worker = worker.clone();
                async move { worker.reconcile(key).await }
            },
        );
    });
}

impl Controller {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(job) = self.jobs.get(key.namespace(), &key.name) else {
            return Ok(None);
        };
        let Some(expire) = expire_at(&job) else {
            return Ok(None);
        };
        let now = jiff::Timestamp::now();
        if expire > now {
            let millis = expire.as_millisecond() - now.as_millisecond() + 10;
            return Ok(Some(Duration::from_millis(
                u64::try_from(millis).unwrap_or(0),
            )));
        }
        // The cache may be stale: check the live object before deleting.
        let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let fresh = api.get_opt(&key.name).await.map_err(|source| Error::Get {
            job: key.to_string(),
            source,
        })?;
        let Some(fresh) = fresh else { return Ok(None) };
        match expire_at(&fresh) {
            Some(at) if at <= now => {}
            Some(at) => {
                let millis = at.as_millisecond() - now.as_millisecond() + 10;
                return Ok(Some(Duration::from_millis(
                    u64::try_from(millis).unwrap_or(0),
                )));
            }
            None => return Ok(None),
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: fresh.metadata.resource_version.clone(),
            }),
            ..DeleteParams::background()
        };
        tracing::info!(job = %key, "deleting finished job whose TTL expired");
        match api.delete(&key.name, &params).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(source) => Err(Error::Delete {
                job: key.to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_expire_ttl_seconds_after_they_finished() {
        let job = |ttl: Option<i32>, condition: Option<&str>| -> Job {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "j"},
                "spec": {"ttlSecondsAfterFinished": ttl, "template": {}},
                "status": {"conditions": condition.map(|c| vec![serde_json::json!({
                    "type": c, "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"})])}
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let at = |s: &str| {
            s.parse::<jiff::Timestamp>()
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            expire_at(&job(Some(30), Some("Complete"))),
            Some(at("2024-01-01T00:00:30Z"))
        );
        assert_eq!(
            expire_at(&job(Some(0), Some("Failed"))),
            Some(at("2024-01-01T00:00:00Z"))
        );
        assert_eq!(expire_at(&job(None, Some("Complete"))), None);
        assert_eq!(expire_at(&job(Some(30), Some("Suspended"))), None);
        assert_eq!(expire_at(&job(Some(30), None)), None);
    }
}
