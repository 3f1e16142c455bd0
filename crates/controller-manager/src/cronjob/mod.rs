//! The CronJob controller: creates a Job `<cronjob>-<scheduled minutes since the epoch>` at each
//! scheduled time (in `spec.timeZone`), honouring `concurrencyPolicy`, `startingDeadlineSeconds`
//! (and upstream's "too many missed start times" rule), `suspend` and the history limits, and
//! keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`.
//!
//! Time comes from a [`Clock`], so tests drive it with a [`TestClock`].

pub mod schedule;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::context::Context;
use crate::events::{EventType, Recorder};
use crate::informer::{Change, Informer};
use crate::job::util as jobutil;
use crate::key::ObjectKey;
use crate::podutil;
use crate::queue::WorkQueue;
use crate::runner;
use schedule::Schedule;

/// Annotation on created Jobs with the scheduled time (RFC 3339, in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// More missed start times than this yield a `TooManyMissedTimes` warning.
const MAX_MISSED: usize = 100;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock tests set by hand.
#[derive(Debug, Clone)]
pub struct TestClock {
    now: Arc<Mutex<Timestamp>>,
}

impl TestClock {
    /// A clock showing `now`.
    pub fn new(now: Timestamp) -> Self {
        TestClock {
            now: Arc::new(Mutex::new(now)),
        }
    }

    /// Sets the time.
    pub fn set(&self, now: Timestamp) {
        match self.now.lock() {
            Ok(mut guard) => *guard = now,
            Err(poisoned) => *poisoned.into_inner() = now,
        }
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        match self.now.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

/// Tunables of the CronJob controller.
#[derive(Clone)]
pub struct CronJobSettings {
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Every CronJob is looked at again this often besides its own next schedule time (tests
    /// with a [`TestClock`] use a short period; `None` relies on the schedule alone).
    pub resync: Option<Duration>,
}

impl Default for CronJobSettings {
    fn default() -> Self {
        CronJobSettings {
            clock: Arc::new(SystemClock),
            resync: None,
        }
    }
}

/// Why a CronJob could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating the Job failed.
    #[error("creating job for cronjob {cronjob}: {source}")]
    CreateJob {
        /// The CronJob.
        cronjob: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a Job failed.
    #[error("deleting job {job}: {source}")]
    DeleteJob {
        /// The Job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading a Job listed in `status.active` from the apiserver failed.
    #[error("getting job {job}: {source}")]
    GetJob {
        /// The Job.
        job: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("updating status of cronjob {cronjob}: {source}")]
    UpdateStatus {
        /// The CronJob.
        cronjob: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The scheduled times in `(earliest, now]`: the most recent one and how many there were
/// (counting stops a little past [`MAX_MISSED`]).
pub fn missed_times(
    schedule: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut most_recent = None;
    let mut count = 0;
    let mut t = earliest;
    while let Some(next) = schedule.next(t, tz) {
        if next > now {
            break;
        }
        most_recent = Some(next);
        count += 1;
        t = next;
        if count > MAX_MISSED + 1 {
            // Enough to warn about; only the most recent one matters now, so skip ahead to the
            // last day (the one found so far stands if the schedule is sparser than that).
            let skip = now - jiff::SignedDuration::from_secs(60 * 60 * 24);
            if t < skip {
                t = skip;
            }
        }
    }
    (most_recent, count)
}

/// The name of the Job for a scheduled time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn job_finished(job: &Job) -> Option<&'static str> {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    if jobutil::has_condition(conditions, "Complete") {
        Some("Complete")
    } else if jobutil::has_condition(conditions, "Failed") {
        Some("Failed")
    } else {
        None
    }
}

fn reference_to(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some(Job::api_version(&()).to_string()),
        kind: Some(Job::kind(&()).to_string()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    cronjobs: Informer<CronJob>,
    jobs: Informer<Job>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
}

/// Starts the CronJob controller on the system clock.
pub fn start(ctx: Arc<Context>) {
    start_with(ctx, CronJobSettings::default());
}

/// Starts the CronJob controller with `settings`.
pub fn start_with(ctx: Arc<Context>, settings: CronJobSettings) {
    let controller = Controller {
        cronjobs: ctx.informers.get::<CronJob>(),
        jobs: ctx.informers.get::<Job>(),
        recorder: ctx.recorder.for_component("cronjob-controller"),
        clock: settings.clock,
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.cronjobs.ready().await;
        controller.jobs.ready().await;
        runner::forward(&controller.cronjobs, queue.clone(), |change| match change {
            Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
            Change::Deleted(_) | Change::Resynced => Vec::new(),
        });
        let handler = controller.clone();
        runner::forward(
            &controller.jobs,
            queue.clone(),
            move |change| match change {
                Change::Applied { new, .. } => handler.owner_of(new).into_iter().collect(),
                Change::Deleted(old) => handler.owner_of(old).into_iter().collect(),
                Change::Resynced => Vec::new(),
            },
        );
        if let Some(period) = settings.resync {
            let cronjobs = controller.cronjobs.clone();
            runner::resync_every(queue.clone(), period, move || {
                cronjobs
                    .list()
                    .iter()
                    .map(|c| ObjectKey::of(c.as_ref()))
                    .collect()
            });
        }
        let worker = controller.clone();
        runner::spawn_workers(
            "cronjob",
            queue,
            controller.ctx.settings.workers.cronjob,
            move |key| {
                let worker = worker.clone();
                async move { worker.reconcile(key).await }
            },
        );
    });
}

impl Controller {
    fn owner_of(&self, job: &Job) -> Option<ObjectKey> {
        let reference = podutil::controller_of(&job.metadata)?;
        (reference.kind == "CronJob" && reference.api_version.starts_with("batch/"))
            .then(|| ObjectKey::new(&job.namespace().unwrap_or_default(), &reference.name))
    }

    fn requeue_for_next(
        &self,
        schedule: &Schedule,
        tz: &TimeZone,
        now: Timestamp,
    ) -> Option<Duration> {
        let next = schedule.next(now, tz)?;
        let millis = next.as_millisecond() - now.as_millisecond() + 100;
        Some(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
    }

    /// The Jobs `status.active` lists that the Job cache does not hold (yet), read from the
    /// apiserver as upstream does: a Job this controller created in a previous sync may not have
    /// reached the cache, and forgetting it would drop it from `status.active` and let a
    /// `Forbid` CronJob start another run. Jobs that are really gone (or were replaced by another
    /// object of the same name) are left out and reported as missing.
    async fn active_jobs_not_cached(
        &self,
        cronjob: &CronJob,
        cached: &[Arc<Job>],
    ) -> Result<Vec<Arc<Job>>, Error> {
        let uid = cronjob.metadata.uid.clone().unwrap_or_default();
        let mut found = Vec::new();
        for reference in cronjob
            .status
            .as_ref()
            .and_then(|s| s.active.as_deref())
            .unwrap_or_default()
        {
            if cached.iter().any(|j| j.metadata.uid == reference.uid) {
                continue;
            }
            let Some(name) = reference.name.as_deref() else {
                continue;
            };
            let namespace = reference
                .namespace
                .clone()
                .or_else(|| cronjob.namespace())
                .unwrap_or_default();
            let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &namespace);
            let job = api.get_opt(name).await.map_err(|source| Error::GetJob {
                job: format!("{namespace}/{name}"),
                source,
            })?;
            match job {
                Some(job)
                    if job.metadata.uid == reference.uid
                        && podutil::controller_of(&job.metadata).is_some_and(|r| r.uid == uid) =>
                {
                    tracing::debug!(cronjob = %cronjob.name_any(), job = name, "active job not cached yet");
                    found.push(Arc::new(job));
                }
                _ => {
                    self.recorder
                        .record(
                            cronjob,
                            EventType::Normal,
                            "MissingJob",
                            &format!("Active job went missing: {name}"),
                        )
                        .await;
                }
            }
        }
        Ok(found)
    }

    async fn delete_job(&self, cronjob: &CronJob, job: &Job) -> Result<(), Error> {
        let name = job.name_any();
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            &job.namespace().unwrap_or_default(),
        );
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {
                self.recorder
                    .record(
                        cronjob,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted job {name}"),
                    )
                    .await;
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::DeleteJob { job: name, source }),
        }
    }

    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(cached) = self.cronjobs.get(key.namespace(), &key.name) else {
            return Ok(None);
        };
        let cronjob = (*cached).clone();
        let uid = cronjob.metadata.uid.clone().unwrap_or_default();
        let mut status = cronjob.status.clone().unwrap_or_default();
        let now = self.clock.now();
        let mut owned: Vec<Arc<Job>> = self
            .jobs
            .list_in(&key.namespace)
            .into_iter()
            .filter(|j| podutil::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        owned.extend(self.active_jobs_not_cached(&cronjob, &owned).await?);

        // Reconcile status.active with the Jobs that exist.
        let mut active: Vec<ObjectReference> = Vec::new();
        for job in &owned {
            let listed = status
                .active
                .iter()
                .flatten()
                .any(|r| r.uid == job.metadata.uid);
            match job_finished(job) {
                None => active.push(reference_to(job)),
                Some(state) if listed => {
                    self.recorder
                        .record(
                            &cronjob,
                            EventType::Normal,
                            "SawCompletedJob",
                            &format!("Saw completed job: {}, condition: {state}", job.name_any()),
                        )
                        .await;
                    if state == "Complete" {
                        let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                        if done.as_ref().map(|t| t.0)
                            > status.last_successful_time.as_ref().map(|t| t.0)
                        {
                            status.last_successful_time = done;
                        }
                    }
                }
                Some(_) => {}
            }
        }
        status.active = (!active.is_empty()).then_some(active.clone());

        let mut requeue = None;
        let mut result = Ok(());
        if cronjob.metadata.deletion_timestamp.is_none() {
            match self.schedule_next(&cronjob, &owned, &mut status, now).await {
                Ok(delay) => requeue = delay,
                Err(error) => result = Err(error),
            }
            self.clean_history(&cronjob, &owned).await?;
        }
        if cronjob.status.as_ref() != Some(&status) {
            let mut updated = cronjob.clone();
            updated.status = Some(status);
            Api::<CronJob>::namespaced(self.ctx.client.clone(), &key.namespace)
                .replace_status(&key.name, &PostParams::default(), &updated)
                .await
                .map_err(|source| Error::UpdateStatus {
                    cronjob: key.to_string(),
                    source,
                })?;
        }
        result?;
        Ok(requeue)
    }

    /// Starts the Job due now, if any; returns when to look again.
    async fn schedule_next(
        &self,
        cronjob: &CronJob,
        owned: &[Arc<Job>],
        status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
        now: Timestamp,
    ) -> Result<Option<Duration>, Error> {
        let spec = cronjob.spec.clone().unwrap_or_default();
        let tz = match spec.time_zone.as_deref() {
            None | Some("") => TimeZone::try_system().unwrap_or(TimeZone::UTC),
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(_) => {
                    self.recorder
                        .record(
                            cronjob,
                            EventType::Warning,
                            "UnknownTimeZone",
                            &format!("invalid timeZone: {name:?}"),
                        )
                        .await;
                    return Ok(None);
                }
            },
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let schedule: Schedule = match spec.schedule.parse() {
            Ok(schedule) => schedule,
            Err(error) => {
                self.recorder
                    .record(
                        cronjob,
                        EventType::Warning,
                        "UnparseableSchedule",
                        &format!("unparseable schedule: {:?} : {error}", spec.schedule),
                    )
                    .await;
                return Ok(None);
            }
        };
        let created = cronjob
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0);
        let mut earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
        if let Some(deadline) = spec.starting_deadline_seconds {
            let window_start = now - jiff::SignedDuration::from_secs(deadline);
            if window_start > earliest {
                earliest = window_start;
            }
        }
        let (scheduled, missed) = missed_times(&schedule, &tz, earliest, now);
        let next = self.requeue_for_next(&schedule, &tz, now);
        let Some(scheduled) = scheduled else {
            return Ok(next);
        };
        if missed > MAX_MISSED {
            self.recorder
                .record(
                    cronjob,
                    EventType::Warning,
                    "TooManyMissedTimes",
                    &format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
                )
                .await;
        }
        if let Some(deadline) = spec.starting_deadline_seconds {
            if scheduled + jiff::SignedDuration::from_secs(deadline) < now {
                self.recorder
                    .record(
                        cronjob,
                        EventType::Warning,
                        "MissSchedule",
                        &format!(
                            "Missed scheduled time to start a job: {}",
                            scheduled.to_zoned(tz.clone())
                        ),
                    )
                    .await;
                return Ok(next);
            }
        }
        let name = job_name(&cronjob.name_any(), scheduled);
        if owned.iter().any(|j| j.name_any() == name) {
            // Started by an earlier sync whose status write was lost (a conflict with a stale
            // cache): the time was scheduled all the same.
            record_scheduled(status, scheduled);
            return Ok(next);
        }
        let active: Vec<&Arc<Job>> = owned.iter().filter(|j| job_finished(j).is_none()).collect();
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                tracing::debug!(cronjob = %cronjob.name_any(), "prior execution still running; Forbid");
                self.recorder
                    .record(
                        cronjob,
                        EventType::Normal,
                        "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid",
                    )
                    .await;
                return Ok(next);
            }
            Some("Replace") => {
                for job in &active {
                    self.delete_job(cronjob, job).await?;
                }
                status.active = None;
            }
            _ => {}
        }
        let job = job_from_template(cronjob, &name, scheduled, &tz);
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            &cronjob.namespace().unwrap_or_default(),
        );
        let created = match api.create(&PostParams::default(), &job).await {
            Ok(created) => created,
            Err(kube::Error::Api(error)) if error.code == 409 => {
                // Created by an earlier sync whose write has not reached the cache yet: record
                // it if it is ours.
                let existing = api.get_opt(&name).await.map_err(|source| Error::GetJob {
                    job: format!("{}/{name}", cronjob.namespace().unwrap_or_default()),
                    source,
                })?;
                let uid = cronjob.metadata.uid.as_deref().unwrap_or_default();
                if let Some(existing) = existing
                    .filter(|j| podutil::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
                {
                    let listed = status
                        .active
                        .iter()
                        .flatten()
                        .any(|r| r.uid == existing.metadata.uid);
                    if !listed && job_finished(&existing).is_none() {
                        status
                            .active
                            .get_or_insert_with(Vec::new)
                            .push(reference_to(&existing));
                    }
                    record_scheduled(status, scheduled);
                }
                return Ok(next);
            }
            Err(source) => {
                self.recorder
                    .record(
                        cronjob,
                        EventType::Warning,
                        "FailedCreate",
                        &format!("Error creating job: {source}"),
                    )
                    .await;
                return Err(Error::CreateJob {
                    cronjob: cronjob.name_any(),
                    source,
                });
            }
        };
        self.recorder
            .record(
                cronjob,
                EventType::Normal,
                "SuccessfulCreate",
                &format!("Created job {name}"),
            )
            .await;
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(reference_to(&created));
        status.last_schedule_time = Some(Time(scheduled));
        Ok(next)
    }

    /// Deletes finished Jobs beyond the history limits, oldest first.
    async fn clean_history(&self, cronjob: &CronJob, owned: &[Arc<Job>]) -> Result<(), Error> {
        let spec = cronjob.spec.clone().unwrap_or_default();
        for (state, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            let mut finished: Vec<&Arc<Job>> = owned
                .iter()
                .filter(|j| {
                    job_finished(j) == Some(state) && j.metadata.deletion_timestamp.is_none()
                })
                .collect();
            finished.sort_by_key(|j| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .or(j.metadata.creation_timestamp.as_ref())
                    .map(|t| t.0)
            });
            let keep = usize::try_from(limit).unwrap_or(0);
            let surplus = finished.len().saturating_sub(keep);
            for job in finished.into_iter().take(surplus) {
                self.delete_job(cronjob, job).await?;
            }
        }
        Ok(())
    }
}

/// Records `scheduled` as `status.lastScheduleTime` unless a later time is there already.
fn record_scheduled(status: &mut k8s_openapi::api::batch::v1::CronJobStatus, scheduled: Timestamp) {
    if status
        .last_schedule_time
        .as_ref()
        .is_none_or(|t| t.0 < scheduled)
    {
        status.last_schedule_time = Some(Time(scheduled));
    }
}

/// The Job a CronJob starts for `scheduled`.
pub fn job_from_template(
    cronjob: &CronJob,
    name: &str,
    scheduled: Timestamp,
    tz: &TimeZone,
) -> Job {
    let template = cronjob
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.to_string(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    );
    let labels: BTreeMap<String, String> = template_meta.labels.unwrap_or_default();
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cronjob.namespace(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![podutil::controller_ref(cronjob)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn job_names_use_minutes_since_the_epoch() {
        assert_eq!(
            job_name("hello", at("2024-01-01T00:00:00Z")),
            "hello-28401120"
        );
    }

    #[test]
    fn missed_times_find_the_most_recent_and_count() {
        let every_minute: Schedule = "* * * * *".parse().unwrap_or_else(|e| panic!("{e}"));
        let utc = TimeZone::UTC;
        let cases = [
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:30Z", None, 0),
            (
                "2024-01-01T00:00:00Z",
                "2024-01-01T00:01:00Z",
                Some("2024-01-01T00:01:00Z"),
                1,
            ),
            (
                "2024-01-01T00:00:00Z",
                "2024-01-01T00:05:10Z",
                Some("2024-01-01T00:05:00Z"),
                5,
            ),
        ];
        for (earliest, now, want, count) in cases {
            let (recent, missed) = missed_times(&every_minute, &utc, at(earliest), at(now));
            assert_eq!(recent, want.map(at));
            assert_eq!(missed, count);
        }
        let (recent, missed) = missed_times(
            &every_minute,
            &utc,
            at("2024-01-01T00:00:00Z"),
            at("2024-01-01T10:00:00Z"),
        );
        assert_eq!(recent, Some(at("2024-01-01T10:00:00Z")));
        assert!(missed > MAX_MISSED);
    }

    #[test]
    fn jobs_from_the_template_are_owned_and_annotated() {
        let cronjob: CronJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hello", "namespace": "default", "uid": "c-1"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
            }}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let job = job_from_template(
            &cronjob,
            "hello-1",
            at("2024-01-01T00:01:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(job.metadata.name.as_deref(), Some("hello-1"));
        assert_eq!(
            job.metadata
                .annotations
                .unwrap_or_default()
                .get(SCHEDULED_TIMESTAMP_ANNOTATION)
                .map(String::as_str),
            Some("2024-01-01T00:01:00+00:00")
        );
        let owner = job.metadata.owner_references.unwrap_or_default();
        assert_eq!(owner[0].kind, "CronJob");
        assert_eq!(owner[0].uid, "c-1");
        assert_eq!(
            job.metadata
                .labels
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("hello")
        );
    }
}
