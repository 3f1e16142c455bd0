//! The Job, CronJob and TTL-after-finished controllers against an in-process apiserver, with a
//! fake kubelet that runs pods to the outcome their `test/outcome` label asks for: `succeed`,
//! `fail` (exit code 1) or `run` (stays Running until the label changes).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::context::Settings;
use kube_controller_manager::cronjob::{CronJobSettings, TestClock};
use kube_controller_manager::job::JobSettings;

mod support;

use support::wait_for;

/// How long `wait_for` polls.
const WAIT: Duration = Duration::from_secs(90);

/// Plays the kubelet: pending pods start Running, then finish as their label says; pods being
/// deleted go away (once their finalizers are gone).
fn spawn_fake_kubelet(client: Client) {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for pod in list.items {
                    let api: Api<Pod> =
                        Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
                    let name = pod.name_any();
                    if pod.metadata.deletion_timestamp.is_some() {
                        let _ = api
                            .delete(&name, &DeleteParams::default().grace_period(0))
                            .await;
                        continue;
                    }
                    let phase = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_else(|| "Pending".into());
                    let outcome = pod
                        .labels()
                        .get("test/outcome")
                        .cloned()
                        .unwrap_or_default();
                    let now = jiff::Timestamp::now().to_string();
                    let patch = match (phase.as_str(), outcome.as_str()) {
                        ("Pending", _) => serde_json::json!({"status": {
                            "phase": "Running", "startTime": now,
                            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                            "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
                                "ready": true, "restartCount": 0, "state": {"running": {"startedAt": now}}}]
                        }}),
                        ("Running", "succeed" | "fail") => {
                            let code = if outcome == "fail" { 1 } else { 0 };
                            serde_json::json!({"status": {
                                "phase": if code == 0 { "Succeeded" } else { "Failed" },
                                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
                                "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
                                    "ready": false, "restartCount": 0,
                                    "state": {"terminated": {"exitCode": code, "finishedAt": now}}}]
                            }})
                        }
                        _ => continue,
                    };
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
}

/// An apiserver, the job controllers (short back-off; the CronJob controller on `clock`), the
/// garbage collector and the fake kubelet.
async fn start_cluster(clock: TestClock) -> anyhow::Result<(TestServer, Client)> {
    let server = TestServer::start().await.context("starting apiserver")?;
    let client = server.client().await?;
    let ctx = kube_controller_manager::testing::start(
        client.clone(),
        Settings::default(),
        &["garbagecollector", "ttl-after-finished"],
    );
    kube_controller_manager::job::start_with(
        ctx.clone(),
        JobSettings {
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            workers: 2,
        },
    );
    kube_controller_manager::cronjob::start_with(
        ctx,
        CronJobSettings {
            clock: Arc::new(clock),
            resync: Some(Duration::from_millis(200)),
        },
    );
    spawn_fake_kubelet(client.clone());
    Ok((server, client))
}

fn new_job(name: &str, spec: serde_json::Value, outcome: &str) -> anyhow::Result<Job> {
    let mut value = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {"labels": {"test/outcome": outcome}},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.35"}]}
            }
        }
    });
    if let (Some(target), Some(extra)) = (value["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    Ok(serde_json::from_value(value)?)
}

fn condition(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

async fn job_pods(client: &Client, job: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    Ok(pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?
        .items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_with_three_completions_two_at_a_time_completes() -> anyhow::Result<()> {
    let (_server, client) = start_cluster(TestClock::new(jiff::Timestamp::now())).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &new_job(
            "work",
            serde_json::json!({"completions": 3, "parallelism": 2}),
            "succeed",
        )?,
    )
    .await?;
    let most_active = Arc::new(AtomicI32::new(0));
    wait_for(WAIT, "job complete", || {
        let jobs = jobs.clone();
        let most_active = most_active.clone();
        async move {
            let job = jobs.get("work").await?;
            let status = job.status.clone().unwrap_or_default();
            most_active.fetch_max(status.active.unwrap_or(0), Ordering::SeqCst);
            Ok(condition(&job, "Complete").is_some())
        }
    })
    .await?;
    let job = jobs.get("work").await?;
    let status = job.status.clone().unwrap_or_default();
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.failed.unwrap_or(0), 0);
    assert_eq!(status.active.unwrap_or(0), 0);
    assert!(status.completion_time.is_some());
    assert!(status.start_time.is_some());
    assert_eq!(
        condition(&job, "SuccessCriteriaMet").as_deref(),
        Some("CompletionsReached")
    );
    assert_eq!(
        condition(&job, "Complete").as_deref(),
        Some("CompletionsReached")
    );
    assert!(most_active.load(Ordering::SeqCst) <= 2);
    let pods = job_pods(&client, "work").await?;
    assert_eq!(pods.len(), 3, "exactly three pods ran");
    for pod in &pods {
        assert!(pod.finalizers().is_empty(), "tracking finalizer removed");
        let uid = job.metadata.uid.clone().unwrap_or_default();
        assert_eq!(
            pod.labels().get("batch.kubernetes.io/controller-uid"),
            Some(&uid)
        );
        assert_eq!(
            pod.labels().get("job-name").map(String::as_str),
            Some("work")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_job_backs_off_and_stops_at_the_backoff_limit() -> anyhow::Result<()> {
    let (_server, client) = start_cluster(TestClock::new(jiff::Timestamp::now())).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &new_job("flaky", serde_json::json!({"backoffLimit": 2}), "fail")?,
    )
    .await?;
    wait_for(WAIT, "job failed", || async {
        Ok(condition(&jobs.get("flaky").await?, "Failed").is_some())
    })
    .await?;
    let job = jobs.get("flaky").await?;
    assert_eq!(
        condition(&job, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(
        condition(&job, "FailureTarget").as_deref(),
        Some("BackoffLimitExceeded")
    );
    let status = job.status.clone().unwrap_or_default();
    assert_eq!(status.failed, Some(3));
    assert!(status.completion_time.is_none());
    // No pod is started after the limit was reached.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job_pods(&client, "flaky").await?.len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_indexed_job_completes_every_index_and_expires_after_its_ttl() -> anyhow::Result<()> {
    let (_server, client) = start_cluster(TestClock::new(jiff::Timestamp::now())).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &new_job(
            "indexed",
            serde_json::json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
            "succeed",
        )?,
    )
    .await?;
    wait_for(WAIT, "indexed job complete", || async {
        Ok(condition(&jobs.get("indexed").await?, "Complete").is_some())
    })
    .await?;
    let job = jobs.get("indexed").await?;
    let status = job.status.clone().unwrap_or_default();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(status.succeeded, Some(3));
    let mut indexes: Vec<String> = job_pods(&client, "indexed")
        .await?
        .iter()
        .map(|p| {
            let index = p
                .annotations()
                .get("batch.kubernetes.io/job-completion-index")
                .cloned()
                .unwrap_or_default();
            let hostname = p.spec.as_ref().and_then(|s| s.hostname.clone());
            assert_eq!(hostname, Some(format!("indexed-{index}")));
            index
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);

    // ttlSecondsAfterFinished: the finished Job is deleted.
    jobs.create(
        &PostParams::default(),
        &new_job(
            "short-lived",
            serde_json::json!({"ttlSecondsAfterFinished": 1}),
            "succeed",
        )?,
    )
    .await?;
    wait_for(WAIT, "short-lived job deleted", || async {
        Ok(jobs.get_opt("short-lived").await?.is_none())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cronjob_fires_on_schedule_and_respects_forbid() -> anyhow::Result<()> {
    let start = jiff::Timestamp::now();
    let clock = TestClock::new(start);
    let (_server, client) = start_cluster(clock.clone()).await?;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let cronjob: CronJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "default"},
        "spec": {
            "schedule": "*/5 * * * *",
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"test/outcome": "run", "app": "tick"}},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.35"}]}
            }}}
        }
    }))?;
    let cronjob = cronjobs.create(&PostParams::default(), &cronjob).await?;
    // Schedule times count from the creation time (whole seconds, on the apiserver's clock), not
    // from when the test started: a 5-minute boundary may fall between the two.
    let created_at = cronjob
        .metadata
        .creation_timestamp
        .as_ref()
        .context("creationTimestamp")?
        .0;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let list_jobs = || async {
        anyhow::Ok(
            jobs.list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|j| j.name_any().starts_with("tick-"))
                .collect::<Vec<_>>(),
        )
    };

    // Nothing before the first scheduled time.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(list_jobs().await?.is_empty());

    let schedule: kube_controller_manager::cronjob::schedule::Schedule = "*/5 * * * *".parse()?;
    let first = schedule
        .next(created_at, &jiff::tz::TimeZone::UTC)
        .context("next time")?;
    clock.set(first + jiff::SignedDuration::from_secs(5));
    let first_name = kube_controller_manager::cronjob::job_name("tick", first);
    wait_for(WAIT, "first job", || async {
        Ok(list_jobs()
            .await?
            .iter()
            .any(|j| j.name_any() == first_name))
    })
    .await?;
    let created = jobs.get(&first_name).await?;
    assert_eq!(
        created
            .annotations()
            .get("batch.kubernetes.io/cronjob-scheduled-timestamp")
            .cloned(),
        Some(first.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string())
    );
    wait_for(WAIT, "cronjob status", || async {
        let cj = cronjobs.get("tick").await?;
        let status = cj.status.unwrap_or_default();
        Ok(status.active.is_some_and(|a| a.len() == 1)
            && status.last_schedule_time.map(|t| t.0) == Some(first))
    })
    .await?;

    // Forbid: the next time comes while the first job still runs: no second job.
    let second = first + jiff::SignedDuration::from_secs(300);
    clock.set(second + jiff::SignedDuration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(list_jobs().await?.len(), 1, "Forbid keeps a single job");

    // Let the first job's pod succeed; the job completes. Only that job's pods: the held-back
    // run may start as soon as it does, and must stay running.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first_pods = format!("app=tick,batch.kubernetes.io/job-name={first_name}");
    wait_for(WAIT, "first job's pod finishes", || async {
        for pod in pods
            .list(&ListParams::default().labels(&first_pods))
            .await?
            .items
        {
            let patch = serde_json::json!({"metadata": {"labels": {"test/outcome": "succeed"}}});
            pods.patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
        Ok(condition(&jobs.get(&first_name).await?, "Complete").is_some())
    })
    .await?;
    let finished = jobs
        .get(&first_name)
        .await?
        .status
        .and_then(|s| s.completion_time)
        .context("completionTime of the first job")?;

    // The run Forbid held back starts once the prior one finished (no startingDeadlineSeconds),
    // and only that one. Like upstream, the sync that sees the first job complete may start the
    // second at once, so `active` goes straight from the first job to the second.
    let second_name = kube_controller_manager::cronjob::job_name("tick", second);
    wait_for(
        WAIT,
        "lastSuccessfulTime and the second job active",
        || async {
            let status = cronjobs.get("tick").await?.status.unwrap_or_default();
            let active: Vec<String> = status
                .active
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| r.name)
                .collect();
            Ok(status.last_successful_time.as_ref() == Some(&finished)
                && active == [second_name.clone()]
                && status.last_schedule_time.map(|t| t.0) == Some(second))
        },
    )
    .await?;
    let mut names: Vec<String> = list_jobs().await?.iter().map(|j| j.name_any()).collect();
    names.sort();
    assert_eq!(names, [first_name, second_name]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_policy_deadline_and_suspend_behave_as_upstream() -> anyhow::Result<()> {
    let (_server, client) = start_cluster(TestClock::new(jiff::Timestamp::now())).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let post = PostParams::default();
    jobs.create(
        &post,
        &new_job(
            "fatal",
            serde_json::json!({"backoffLimit": 6, "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}
            ]}}),
            "fail",
        )?,
    )
    .await?;
    jobs.create(
        &post,
        &new_job(
            "slow",
            serde_json::json!({"activeDeadlineSeconds": 1}),
            "run",
        )?,
    )
    .await?;
    jobs.create(
        &post,
        &new_job("paused", serde_json::json!({"suspend": true}), "run")?,
    )
    .await?;

    wait_for(WAIT, "fatal job failed by policy", || async {
        Ok(condition(&jobs.get("fatal").await?, "Failed").as_deref() == Some("PodFailurePolicy"))
    })
    .await?;
    assert_eq!(
        jobs.get("fatal").await?.status.and_then(|s| s.failed),
        Some(1)
    );

    wait_for(WAIT, "slow job past its deadline", || async {
        Ok(condition(&jobs.get("slow").await?, "Failed").as_deref() == Some("DeadlineExceeded"))
    })
    .await?;
    wait_for(WAIT, "slow job's pod removed", || async {
        Ok(job_pods(&client, "slow").await?.is_empty())
    })
    .await?;

    wait_for(WAIT, "paused job suspended", || async {
        Ok(condition(&jobs.get("paused").await?, "Suspended").as_deref() == Some("JobSuspended"))
    })
    .await?;
    assert!(job_pods(&client, "paused").await?.is_empty());
    let resume = serde_json::json!({"spec": {"suspend": false}});
    jobs.patch("paused", &PatchParams::default(), &Patch::Merge(&resume))
        .await?;
    wait_for(WAIT, "paused job resumed with a pod", || async {
        let job = jobs.get("paused").await?;
        let resumed = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c.type_ == "Suspended"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("JobResumed")
                })
            });
        Ok(resumed && job_pods(&client, "paused").await?.len() == 1)
    })
    .await?;
    // A running Job's status settles: no write loop.
    wait_for(WAIT, "paused job's pod ready", || async {
        Ok(jobs.get("paused").await?.status.and_then(|s| s.ready) == Some(1))
    })
    .await?;
    let before = jobs.get("paused").await?.resource_version();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(jobs.get("paused").await?.resource_version(), before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_running_job_releases_and_removes_its_pods() -> anyhow::Result<()> {
    let (_server, client) = start_cluster(TestClock::new(jiff::Timestamp::now())).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &new_job(
            "doomed",
            serde_json::json!({"parallelism": 2, "completions": 4}),
            "run",
        )?,
    )
    .await?;
    wait_for(WAIT, "two running pods", || async {
        Ok(jobs.get("doomed").await?.status.and_then(|s| s.ready) == Some(2))
    })
    .await?;
    jobs.delete("doomed", &DeleteParams::background()).await?;
    wait_for(WAIT, "pods gone", || async {
        Ok(job_pods(&client, "doomed").await?.is_empty())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cronjob_with_replace_swaps_the_running_job() -> anyhow::Result<()> {
    let start = jiff::Timestamp::now();
    let clock = TestClock::new(start);
    let (_server, client) = start_cluster(clock.clone()).await?;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let cronjob: CronJob = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "swap", "namespace": "default"},
        "spec": {
            "schedule": "@hourly",
            "concurrencyPolicy": "Replace",
            "timeZone": "Etc/UTC",
            "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"test/outcome": "run"}},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.35"}]}
            }}}
        }
    }))?;
    let cronjob = cronjobs.create(&PostParams::default(), &cronjob).await?;
    // Schedule times count from the creation time, which may be past an hour boundary that
    // `start` is not.
    let created_at = cronjob
        .metadata
        .creation_timestamp
        .as_ref()
        .context("creationTimestamp")?
        .0;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let names = || async {
        anyhow::Ok(
            jobs.list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .map(|j| j.name_any())
                .collect::<Vec<_>>(),
        )
    };
    let schedule: kube_controller_manager::cronjob::schedule::Schedule = "@hourly".parse()?;
    let first = schedule
        .next(created_at, &jiff::tz::TimeZone::UTC)
        .context("next time")?;
    clock.set(first + jiff::SignedDuration::from_secs(1));
    let first_name = kube_controller_manager::cronjob::job_name("swap", first);
    wait_for(WAIT, "first job", || async {
        Ok(names().await? == [first_name.clone()])
    })
    .await?;
    let second = first + jiff::SignedDuration::from_secs(3600);
    clock.set(second + jiff::SignedDuration::from_secs(1));
    let second_name = kube_controller_manager::cronjob::job_name("swap", second);
    wait_for(WAIT, "second job replaces the first", || async {
        Ok(names().await? == [second_name.clone()])
    })
    .await?;
    Ok(())
}
