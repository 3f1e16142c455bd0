//! The Job controller: runs pods until `completions` of them succeeded (NonIndexed) or every
//! index in `0..completions` has a succeeded pod (Indexed), at most `parallelism` at a time.
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer; a finished pod is first recorded
//! in `status.uncountedTerminatedPods`, then its finalizer is removed, then it moves into the
//! `succeeded`/`failed` counts (upstream's tracking with finalizers, so no pod is counted twice or
//! lost). Failures back off exponentially (10s doubling, capped at 6 minutes) and fail the Job
//! after `backoffLimit`; `activeDeadlineSeconds`, `podFailurePolicy` and `suspend` behave as
//! upstream. Finishing first sets `FailureTarget`/`SuccessCriteriaMet`, removes the remaining
//! pods, then sets `Failed`/`Complete`.

pub mod util;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::selector::Selector;
use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::events::{EventType, Recorder};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::podutil;
use crate::queue::WorkQueue;
use crate::runner;
use util::{
    FailureVerdict, COMPLETION_INDEX_ANNOTATION, CONTROLLER_UID_LABEL, JOB_NAME_LABEL,
    LEGACY_CONTROLLER_UID_LABEL, LEGACY_JOB_NAME_LABEL, TRACKING_FINALIZER,
};

/// Why a Job could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating a pod failed.
    #[error("creating pod for job {job}: {source}")]
    CreatePod {
        /// The Job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a pod failed.
    #[error("deleting pod {pod}: {source}")]
    DeletePod {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Removing the tracking finalizer from a pod failed.
    #[error("removing the tracking finalizer from pod {pod}: {source}")]
    RemoveFinalizer {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("updating status of job {job}: {source}")]
    UpdateStatus {
        /// The Job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Tunables of the Job controller (tests shorten the back-off).
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// First back-off delay after a failure (upstream: 10s).
    pub backoff_base: Duration,
    /// Longest back-off delay (upstream: 6 minutes).
    pub backoff_max: Duration,
    /// Worker count (`--concurrent-job-syncs`, upstream default 5).
    pub workers: usize,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(360),
            workers: 5,
        }
    }
}

/// Consecutive failures since the last success, and when the last one was counted.
#[derive(Debug, Clone, Copy, Default)]
struct BackoffRecord {
    failures: u32,
    last_failure: Option<jiff::Timestamp>,
}

/// The running controller's state.
#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    expectations: Expectations,
    recorder: Recorder,
    settings: JobSettings,
    backoff: Arc<Mutex<HashMap<ObjectKey, BackoffRecord>>>,
    /// UIDs of pods whose tracking finalizer this controller removed while the pod cache may
    /// still show it (upstream's finalizer expectations): such a pod is already counted and must
    /// not be recorded as newly finished again from a stale cache.
    released: Arc<Mutex<HashSet<String>>>,
}

/// Starts the Job controller with upstream's settings.
pub fn start(ctx: Arc<Context>) {
    let settings = JobSettings {
        workers: ctx.settings.workers.job,
        ..JobSettings::default()
    };
    start_with(ctx, settings);
}

/// Starts the Job controller with `settings`.
pub fn start_with(ctx: Arc<Context>, settings: JobSettings) {
    let controller = Controller {
        jobs: ctx.informers.get::<Job>(),
        pods: ctx.informers.get::<Pod>(),
        expectations: Expectations::default(),
        recorder: ctx.recorder.for_component("job-controller"),
        settings,
        backoff: Arc::default(),
        released: Arc::default(),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.jobs.ready().await;
        controller.pods.ready().await;
        runner::forward(&controller.jobs, queue.clone(), |change| match change {
            Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
            Change::Deleted(old) => vec![ObjectKey::of(old.as_ref())],
            Change::Resynced => Vec::new(),
        });
        let handler = controller.clone();
        runner::forward(&controller.pods, queue.clone(), move |change| {
            handler.pod_changed(change)
        });
        // Pods whose Job is gone still hold the tracking finalizer: release them.
        let orphans: WorkQueue<ObjectKey> = WorkQueue::new();
        let finder = controller.clone();
        runner::forward(
            &controller.pods,
            orphans.clone(),
            move |change| match change {
                Change::Applied { new, .. } if finder.is_orphan(new) => {
                    vec![ObjectKey::of(new.as_ref())]
                }
                _ => Vec::new(),
            },
        );
        let releaser = controller.clone();
        runner::spawn_workers("job-orphan-pods", orphans, 1, move |key| {
            let releaser = releaser.clone();
            async move { releaser.release_orphan(key).await }
        });
        let workers = controller.settings.workers;
        let worker = controller.clone();
        runner::spawn_workers("job", queue, workers, move |key| {
            let worker = worker.clone();
            async move { worker.reconcile(key).await }
        });
    });
}

fn is_job_ref(reference: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    reference.kind == "Job" && reference.api_version.starts_with("batch/")
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// The selector the Job's pods must match: `spec.selector`, or the generated
/// `batch.kubernetes.io/controller-uid` selector when the apiserver did not set one.
fn job_selector(job: &Job) -> Option<Selector> {
    match job.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(selector) => Selector::from_label_selector(selector).ok(),
        None => {
            let uid = job.metadata.uid.clone()?;
            Selector::from_labels(&BTreeMap::from([(CONTROLLER_UID_LABEL.to_string(), uid)])).ok()
        }
    }
}

impl Controller {
    fn lock_backoff(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, BackoffRecord>> {
        match self.backoff.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn lock_released(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        match self.released.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether `pod` still holds the tracking finalizer: it shows it, and this controller has
    /// not already removed it (the cache may lag behind our own patch).
    fn holds_finalizer(&self, pod: &Pod) -> bool {
        has_finalizer(pod)
            && !pod
                .metadata
                .uid
                .as_ref()
                .is_some_and(|uid| self.lock_released().contains(uid))
    }

    fn resolve_owner(&self, pod: &Pod) -> Option<ObjectKey> {
        let reference = podutil::controller_of(&pod.metadata)?;
        if !is_job_ref(reference) {
            return None;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let job = self.jobs.get(Some(&namespace), &reference.name)?;
        (job.metadata.uid.as_deref() == Some(reference.uid.as_str()))
            .then(|| ObjectKey::new(&namespace, &reference.name))
    }

    /// Whether a pod holds the tracking finalizer for a Job that is not in the cache.
    fn is_orphan(&self, pod: &Pod) -> bool {
        has_finalizer(pod)
            && podutil::controller_of(&pod.metadata).is_some_and(is_job_ref)
            && self.resolve_owner(pod).is_none()
    }

    /// Removes the tracking finalizer from a pod whose Job no longer exists (checked live).
    async fn release_orphan(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(pod) = self.pods.get(key.namespace(), &key.name) else {
            return Ok(None);
        };
        if !self.is_orphan(&pod) {
            return Ok(None);
        }
        let Some(reference) = podutil::controller_of(&pod.metadata) else {
            return Ok(None);
        };
        let live = Api::<Job>::namespaced(self.ctx.client.clone(), &key.namespace)
            .get_opt(&reference.name)
            .await
            .map_err(|source| Error::RemoveFinalizer {
                pod: key.to_string(),
                source,
            })?;
        if live.is_some_and(|job| job.metadata.uid.as_deref() == Some(reference.uid.as_str())) {
            // The Job exists; the cache is behind. Its own sync handles the pod.
            return Ok(Some(Duration::from_secs(1)));
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        self.remove_finalizer(&api, &pod).await?;
        Ok(None)
    }

    fn pod_changed(&self, change: &Change<Pod>) -> Vec<ObjectKey> {
        match change {
            Change::Applied { new, .. } if !has_finalizer(new) => {
                if let Some(uid) = &new.metadata.uid {
                    self.lock_released().remove(uid);
                }
            }
            Change::Deleted(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.lock_released().remove(uid);
                }
            }
            _ => {}
        }
        match change {
            Change::Applied { old, new } => {
                let mut keys = Vec::new();
                if let Some(owner) = self.resolve_owner(new) {
                    let newly_deleted = new.metadata.deletion_timestamp.is_some()
                        && old
                            .as_ref()
                            .is_none_or(|o| o.metadata.deletion_timestamp.is_none());
                    if old.is_none() {
                        self.expectations.creation_observed(&owner);
                    }
                    if newly_deleted {
                        self.expectations.deletion_observed(&owner, &new.name_any());
                    }
                    keys.push(owner);
                }
                keys
            }
            Change::Deleted(pod) => match self.resolve_owner(pod) {
                Some(owner) => {
                    self.expectations.deletion_observed(&owner, &pod.name_any());
                    vec![owner]
                }
                None => Vec::new(),
            },
            Change::Resynced => Vec::new(),
        }
    }

    async fn write_status(&self, job: &Job, status: JobStatus) -> Result<Job, Error> {
        let key = ObjectKey::of(job);
        let mut updated = job.clone();
        updated.status = Some(status);
        Api::<Job>::namespaced(self.ctx.client.clone(), &key.namespace)
            .replace_status(&key.name, &PostParams::default(), &updated)
            .await
            .map_err(|source| Error::UpdateStatus {
                job: key.to_string(),
                source,
            })
    }

    async fn remove_finalizer(&self, api: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
        let finalizers: Vec<String> = pod
            .finalizers()
            .iter()
            .filter(|f| *f != TRACKING_FINALIZER)
            .cloned()
            .collect();
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": pod.resource_version(),
            "finalizers": finalizers,
        }});
        match api
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.lock_released().insert(uid.clone());
                }
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::RemoveFinalizer {
                pod: pod.name_any(),
                source,
            }),
        }
    }

    async fn delete_pods(
        &self,
        job: &Job,
        api: &Api<Pod>,
        victims: &[Arc<Pod>],
    ) -> Result<(), Error> {
        if victims.is_empty() {
            return Ok(());
        }
        let key = ObjectKey::of(job);
        self.expectations
            .expect_deletions(&key, victims.iter().map(|p| p.name_any()));
        let mut failure = None;
        for pod in victims {
            let name = pod.name_any();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    self.recorder
                        .record(
                            job,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                        )
                        .await;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.expectations.deletion_observed(&key, &name);
                }
                Err(source) => {
                    self.expectations.deletion_observed(&key, &name);
                    failure = Some(Error::DeletePod { pod: name, source });
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn create_pods(
        &self,
        job: &Job,
        api: &Api<Pod>,
        indexes: Vec<Option<i32>>,
    ) -> Result<(), Error> {
        if indexes.is_empty() {
            return Ok(());
        }
        let key = ObjectKey::of(job);
        self.expectations.expect_creations(&key, indexes.len());
        let mut failure = None;
        for index in indexes {
            if failure.is_some() {
                self.expectations.creation_observed(&key);
                continue;
            }
            let pod = pod_for(job, index);
            match api.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    self.recorder
                        .record(
                            job,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", created.name_any()),
                        )
                        .await;
                }
                Err(source) => {
                    self.expectations.creation_observed(&key);
                    self.recorder
                        .record(
                            job,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {source}"),
                        )
                        .await;
                    failure = Some(source);
                }
            }
        }
        match failure {
            Some(source) => Err(Error::CreatePod {
                job: key.to_string(),
                source,
            }),
            None => Ok(()),
        }
    }

    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(cached) = self.jobs.get(key.namespace(), &key.name) else {
            self.expectations.forget(&key);
            self.lock_backoff().remove(&key);
            return Ok(None);
        };
        let mut job = (*cached).clone();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let spec = job.spec.clone().unwrap_or_default();
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let selector = job_selector(&job);
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_in(&key.namespace)
            .into_iter()
            .filter(|p| podutil::controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .filter(|p| selector.as_ref().is_none_or(|s| s.matches(p.labels())))
            .collect();
        let by_uid: HashMap<String, Arc<Pod>> = pods
            .iter()
            .map(|p| (p.metadata.uid.clone().unwrap_or_default(), Arc::clone(p)))
            .collect();
        let mut status = job.status.clone().unwrap_or_default();
        let mut conditions = status.conditions.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();

        if util::is_finished(&conditions) || job.metadata.deletion_timestamp.is_some() {
            // Nothing to run; only let go of pods still held by the tracking finalizer.
            for pod in pods.iter().filter(|p| self.holds_finalizer(p)) {
                self.remove_finalizer(&pods_api, pod).await?;
            }
            return Ok(None);
        }

        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let completions = spec.completions;
        let suspended = spec.suspend == Some(true);
        let finishing = util::has_condition(&conditions, "FailureTarget")
            || util::has_condition(&conditions, "SuccessCriteriaMet");

        // 1. Record newly finished pods as uncounted before releasing them.
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut uncounted_succeeded: BTreeSet<String> = uncounted
            .succeeded
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut uncounted_failed: BTreeSet<String> = uncounted
            .failed
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut completed = util::parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
        let mut pending_indexes: BTreeSet<i32> = BTreeSet::new();
        let mut to_release: Vec<Arc<Pod>> = Vec::new();
        let mut failure_target: Option<(String, String)> = None;
        let mut recorded_new = false;
        for pod in pods.iter().filter(|p| self.holds_finalizer(p)) {
            let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
            if uncounted_succeeded.contains(&pod_uid) || uncounted_failed.contains(&pod_uid) {
                to_release.push(Arc::clone(pod));
                continue;
            }
            let phase = podutil::phase(pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            if phase == "Succeeded" {
                let index = util::pod_index(pod);
                let counts = !indexed
                    || index.is_some_and(|i| {
                        completions.is_some_and(|c| i < c)
                            && !completed.contains(&i)
                            && !pending_indexes.contains(&i)
                    });
                if counts {
                    if let Some(i) = index.filter(|_| indexed) {
                        pending_indexes.insert(i);
                    }
                    uncounted_succeeded.insert(pod_uid);
                    recorded_new = true;
                }
                to_release.push(Arc::clone(pod));
            } else if phase == "Failed" || terminating {
                if phase != "Failed" && (suspended || finishing) {
                    // Removed by this controller; not a failure.
                    to_release.push(Arc::clone(pod));
                    continue;
                }
                match util::match_failure_policy(spec.pod_failure_policy.as_ref(), pod) {
                    FailureVerdict::Ignore => {}
                    FailureVerdict::FailJob(message) => {
                        failure_target.get_or_insert(("PodFailurePolicy".to_string(), message));
                        uncounted_failed.insert(pod_uid);
                        recorded_new = true;
                    }
                    FailureVerdict::Count => {
                        uncounted_failed.insert(pod_uid);
                        recorded_new = true;
                    }
                }
                to_release.push(Arc::clone(pod));
            }
        }
        if recorded_new {
            status.uncounted_terminated_pods =
                Some(uncounted_pods(&uncounted_succeeded, &uncounted_failed));
            job = self.write_status(&job, status.clone()).await?;
        }

        // 2. Release them.
        for pod in &to_release {
            self.remove_finalizer(&pods_api, pod).await?;
        }

        // 3. Count what was released (or is gone).
        let released: HashSet<String> = to_release
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let is_released = |uid: &String| {
            released.contains(uid) || by_uid.get(uid).is_none_or(|p| !self.holds_finalizer(p))
        };
        let mut succeeded = status.succeeded.unwrap_or(0);
        let mut failed = status.failed.unwrap_or(0);
        let mut new_successes = 0;
        let mut new_failures = 0u32;
        uncounted_succeeded.retain(|pod_uid| {
            if !is_released(pod_uid) {
                return true;
            }
            if indexed {
                if let Some(i) = by_uid.get(pod_uid).and_then(|p| util::pod_index(p)) {
                    completed.insert(i);
                }
            } else {
                succeeded += 1;
            }
            new_successes += 1;
            false
        });
        uncounted_failed.retain(|pod_uid| {
            if !is_released(pod_uid) {
                return true;
            }
            failed += 1;
            new_failures += 1;
            false
        });
        if indexed {
            succeeded = i32::try_from(completed.len()).unwrap_or(i32::MAX);
            status.completed_indexes =
                Some(util::format_indexes(&completed)).filter(|s| !s.is_empty());
        }
        status.succeeded = Some(succeeded);
        status.failed = Some(failed);
        status.uncounted_terminated_pods =
            Some(uncounted_pods(&uncounted_succeeded, &uncounted_failed));
        let backoff = {
            let mut records = self.lock_backoff();
            let record = records.entry(key.clone()).or_default();
            if new_successes > 0 {
                record.failures = 0;
            }
            if new_failures > 0 {
                record.failures = record.failures.saturating_add(new_failures);
                record.last_failure = Some(now);
            }
            *record
        };

        let active: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| podutil::is_pod_active(p))
            .cloned()
            .collect();
        let terminating = pods
            .iter()
            .filter(|p| {
                podutil::is_terminating(p)
                    && podutil::phase(p) != "Succeeded"
                    && podutil::phase(p) != "Failed"
            })
            .count();

        // 4. Decide whether the Job is done.
        let mut requeue: Option<Duration> = None;
        if !util::has_condition(&conditions, "FailureTarget")
            && !util::has_condition(&conditions, "SuccessCriteriaMet")
        {
            let backoff_limit = spec.backoff_limit.unwrap_or(6);
            let deadline = spec
                .active_deadline_seconds
                .zip(status.start_time.as_ref().map(|t| t.0))
                .filter(|_| !suspended)
                .map(|(seconds, start)| start + jiff::SignedDuration::from_secs(seconds));
            let success = match completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active.is_empty(),
            };
            let restart_policy = spec
                .template
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref());
            let exceeded = failed > backoff_limit
                || util::past_backoff_limit_on_failure(
                    restart_policy,
                    backoff_limit,
                    active.iter().map(|p| p.as_ref()),
                );
            if failure_target.is_none() && exceeded {
                failure_target = Some((
                    "BackoffLimitExceeded".to_string(),
                    "Job has reached the specified backoff limit".to_string(),
                ));
            }
            if failure_target.is_none() {
                if let Some(deadline) = deadline {
                    if now >= deadline {
                        failure_target = Some((
                            "DeadlineExceeded".to_string(),
                            "Job was active longer than specified deadline".to_string(),
                        ));
                    } else {
                        requeue = Some(duration_until(now, deadline));
                    }
                }
            }
            if let Some((reason, message)) = &failure_target {
                util::set_condition(
                    &mut conditions,
                    "FailureTarget",
                    "True",
                    reason,
                    message,
                    now,
                );
            } else if success {
                util::set_condition(
                    &mut conditions,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                );
            }
        }
        let target = conditions
            .iter()
            .find(|c| {
                (c.type_ == "FailureTarget" || c.type_ == "SuccessCriteriaMet")
                    && c.status == "True"
            })
            .cloned();

        let mut manage_result = Ok(());
        // Condition events are recorded once the status that carries them is written.
        let mut events: Vec<(EventType, String, String)> = Vec::new();
        if let Some(target) = &target {
            // Finishing: remove what still runs, then set the final condition.
            if self.expectations.satisfied(&key) {
                manage_result = self.delete_pods(&job, &pods_api, &active).await;
            }
            let clear = active.is_empty()
                && terminating == 0
                && uncounted_succeeded.is_empty()
                && uncounted_failed.is_empty();
            if clear {
                let reason = target.reason.clone().unwrap_or_default();
                let message = target.message.clone().unwrap_or_default();
                if target.type_ == "SuccessCriteriaMet" {
                    util::set_condition(
                        &mut conditions,
                        "Complete",
                        "True",
                        &reason,
                        &message,
                        now,
                    );
                    status.completion_time = Some(Time(now));
                    events.push((
                        EventType::Normal,
                        "Completed".to_string(),
                        "Job completed".to_string(),
                    ));
                } else {
                    util::set_condition(&mut conditions, "Failed", "True", &reason, &message, now);
                    events.push((EventType::Warning, reason.clone(), message.clone()));
                }
            }
        } else if suspended {
            if self.expectations.satisfied(&key) {
                manage_result = self.delete_pods(&job, &pods_api, &active).await;
            }
            if util::set_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            ) {
                events.push((
                    EventType::Normal,
                    "Suspended".to_string(),
                    "Job suspended".to_string(),
                ));
            }
        } else {
            if util::has_condition(&conditions, "Suspended") {
                util::set_condition(
                    &mut conditions,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                );
                status.start_time = Some(Time(now));
                events.push((
                    EventType::Normal,
                    "Resumed".to_string(),
                    "Job resumed".to_string(),
                ));
            }
            if status.start_time.is_none() {
                status.start_time = Some(Time(now));
                if let Some(seconds) = spec.active_deadline_seconds {
                    requeue = Some(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)));
                }
            }
            if self.expectations.satisfied(&key) {
                let parallelism = spec.parallelism.unwrap_or(1);
                let (to_create, to_delete) = if indexed {
                    plan_indexed(parallelism, completions.unwrap_or(0), &completed, &active)
                } else {
                    let want = util::wanted_active(parallelism, completions, succeeded);
                    plan_non_indexed(want, &active)
                };
                manage_result = self.delete_pods(&job, &pods_api, &to_delete).await;
                if manage_result.is_ok() && !to_create.is_empty() {
                    let delay = util::backoff_delay(
                        backoff.failures,
                        self.settings.backoff_base,
                        self.settings.backoff_max,
                    );
                    let ready_at = backoff
                        .last_failure
                        .map(|t| t + jiff::SignedDuration::try_from(delay).unwrap_or_default());
                    match ready_at.filter(|at| *at > now) {
                        Some(at) => {
                            let wait = duration_until(now, at);
                            requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
                        }
                        None => manage_result = self.create_pods(&job, &pods_api, to_create).await,
                    }
                }
            }
        }

        let ready = active.iter().filter(|p| podutil::is_pod_ready(p)).count();
        status.active = Some(i32::try_from(active.len()).unwrap_or(i32::MAX));
        status.ready = Some(i32::try_from(ready).unwrap_or(i32::MAX));
        status.terminating = Some(i32::try_from(terminating).unwrap_or(i32::MAX));
        status.conditions = (!conditions.is_empty()).then_some(conditions);
        if job.status.as_ref() != Some(&status) {
            job = self.write_status(&job, status).await?;
        }
        for (kind, reason, message) in events {
            self.recorder.record(&job, kind, &reason, &message).await;
        }
        manage_result?;
        Ok(requeue)
    }
}

/// `status.uncountedTerminatedPods` with empty lists left out (as upstream serialises it).
fn uncounted_pods(
    succeeded: &BTreeSet<String>,
    failed: &BTreeSet<String>,
) -> UncountedTerminatedPods {
    let list = |set: &BTreeSet<String>| (!set.is_empty()).then(|| set.iter().cloned().collect());
    UncountedTerminatedPods {
        succeeded: list(succeeded),
        failed: list(failed),
    }
}

fn duration_until(now: jiff::Timestamp, at: jiff::Timestamp) -> Duration {
    let millis = (at.as_millisecond() - now.as_millisecond()).max(0) + 10;
    Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// Which pods to create (none are indexed) and delete for a NonIndexed Job wanting `want` active.
fn plan_non_indexed(want: i32, active: &[Arc<Pod>]) -> (Vec<Option<i32>>, Vec<Arc<Pod>>) {
    let have = i32::try_from(active.len()).unwrap_or(i32::MAX);
    if have < want {
        let count = usize::try_from(want - have).unwrap_or(0);
        (vec![None; count], Vec::new())
    } else {
        let surplus = usize::try_from(have - want).unwrap_or(0);
        let mut ranked = active.to_vec();
        // Not-ready pods first, then the newest.
        ranked.sort_by_key(|p| {
            (
                podutil::is_pod_ready(p),
                std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            )
        });
        ranked.truncate(surplus);
        (Vec::new(), ranked)
    }
}

/// Which indexes to start and which pods to delete for an Indexed Job: duplicates and
/// out-of-range indexes go, missing indexes start (lowest first) up to `parallelism`.
fn plan_indexed(
    parallelism: i32,
    completions: i32,
    completed: &BTreeSet<i32>,
    active: &[Arc<Pod>],
) -> (Vec<Option<i32>>, Vec<Arc<Pod>>) {
    let mut running: BTreeSet<i32> = BTreeSet::new();
    let mut delete = Vec::new();
    let mut kept = 0usize;
    for pod in active {
        match util::pod_index(pod) {
            Some(i) if i < completions && !completed.contains(&i) && running.insert(i) => kept += 1,
            _ => delete.push(Arc::clone(pod)),
        }
    }
    let room = usize::try_from(parallelism)
        .unwrap_or(0)
        .saturating_sub(kept);
    let create = (0..completions)
        .filter(|i| !completed.contains(i) && !running.contains(i))
        .take(room)
        .map(Some)
        .collect();
    (create, delete)
}

/// The pod a Job runs (with `index` for Indexed Jobs).
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(CONTROLLER_UID_LABEL.to_string(), uid.clone());
    labels.insert(JOB_NAME_LABEL.to_string(), name.clone());
    labels.insert(LEGACY_CONTROLLER_UID_LABEL.to_string(), uid);
    labels.insert(LEGACY_JOB_NAME_LABEL.to_string(), name.clone());
    meta.name = None;
    meta.namespace = job.namespace();
    meta.generate_name = Some(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    meta.finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.to_string());
    meta.owner_references = Some(vec![podutil::controller_ref(job)]);
    let mut spec = template.spec.unwrap_or_default();
    if let Some(i) = index {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX_ANNOTATION.to_string(), i.to_string());
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX_ANNOTATION.to_string(), i.to_string());
        if spec.hostname.is_none() {
            spec.hostname = Some(format!("{name}-{i}"));
        }
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".to_string(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
                }),
                ..EnvVarSource::default()
            }),
        };
        for container in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let vars = container.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == env.name) {
                vars.push(env.clone());
            }
        }
    }
    Pod {
        metadata: meta,
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(indexed: bool) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {
                "completionMode": if indexed { "Indexed" } else { "NonIndexed" },
                "template": {"metadata": {"labels": {"app": "pi"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn indexed_pod(index: i32) -> Arc<Pod> {
        Arc::new(pod_for(&job(true), Some(index)))
    }

    #[test]
    fn pods_carry_job_labels_finalizer_and_index() {
        let pod = pod_for(&job(true), Some(2));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(CONTROLLER_UID_LABEL).map(String::as_str),
            Some("u-1")
        );
        assert_eq!(labels.get(JOB_NAME_LABEL).map(String::as_str), Some("pi"));
        assert_eq!(
            labels.get("controller-uid").map(String::as_str),
            Some("u-1")
        );
        assert_eq!(labels.get("app").map(String::as_str), Some("pi"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(pod.finalizers(), [TRACKING_FINALIZER.to_string()]);
        assert_eq!(util::pod_index(&pod), Some(2));
        let spec = pod.spec.unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        assert!(spec.containers[0]
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "JOB_COMPLETION_INDEX"));
        let plain = pod_for(&job(false), None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(plain.spec.and_then(|s| s.hostname).is_none());
    }

    #[test]
    fn indexed_plans_fill_missing_indexes_and_drop_duplicates() {
        let completed = BTreeSet::from([0]);
        let active = vec![indexed_pod(1), indexed_pod(1), indexed_pod(9)];
        let (create, delete) = plan_indexed(3, 5, &completed, &active);
        assert_eq!(create, vec![Some(2), Some(3)]);
        assert_eq!(delete.len(), 2);
        let (create, delete) = plan_indexed(2, 3, &BTreeSet::from([0, 1, 2]), &[]);
        assert!(create.is_empty() && delete.is_empty());
    }

    #[test]
    fn non_indexed_plans_create_or_trim() {
        let (create, delete) = plan_non_indexed(2, &[]);
        assert_eq!(create.len(), 2);
        assert!(delete.is_empty());
        let active = vec![indexed_pod(0), indexed_pod(1), indexed_pod(2)];
        let (create, delete) = plan_non_indexed(1, &active);
        assert!(create.is_empty());
        assert_eq!(delete.len(), 2);
    }
}
