//! Events against a real apiserver: a repeated event is one Event whose count grows, as upstream's
//! recorder writes it (and `kubectl describe` shows `(x3 over ...)`); a different message is a new
//! Event; a repeat whose Event was deleted creates a new one counting from 1.

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_apiserver::testing::TestServer;
use kube_controller_manager::events::{EventType, Recorder};

/// The events about config map `name`, as (reason, message, count), oldest first.
async fn events_about(
    api: &Api<Event>,
    name: &str,
) -> anyhow::Result<Vec<(String, String, i32, Event)>> {
    let mut events: Vec<Event> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect();
    events.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0));
    Ok(events
        .into_iter()
        .map(|e| {
            (
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
                e.count.unwrap_or_default(),
                e,
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_is_counted_on_one_object() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let map: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default"}
    }))?;
    let map = maps.create(&PostParams::default(), &map).await?;
    let recorder = Recorder::new(client.clone(), "test-controller");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");

    for _ in 0..3 {
        recorder
            .record(&map, EventType::Warning, "Broken", "it broke")
            .await;
    }
    let seen = events_about(&events, "settings").await?;
    let summary: Vec<_> = seen
        .iter()
        .map(|(r, m, c, _)| (r.as_str(), m.as_str(), *c))
        .collect();
    assert_eq!(summary, vec![("Broken", "it broke", 3)]);
    let first = &seen[0].3;
    assert!(
        first.last_timestamp.as_ref().map(|t| t.0) >= first.first_timestamp.as_ref().map(|t| t.0),
        "{first:?}"
    );
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(
        first.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("test-controller")
    );

    // Another message is another event; another component is another event too.
    recorder
        .record(&map, EventType::Warning, "Broken", "it broke again")
        .await;
    recorder
        .for_component("other-controller")
        .record(&map, EventType::Warning, "Broken", "it broke")
        .await;
    let seen = events_about(&events, "settings").await?;
    let mut counts: Vec<_> = seen.iter().map(|(_, m, c, _)| (m.clone(), *c)).collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("it broke".to_string(), 1),
            ("it broke".to_string(), 3),
            ("it broke again".to_string(), 1),
        ]
    );

    // The counted event goes away (the event TTL, or a delete): the next repeat starts over.
    let counted = seen
        .iter()
        .find(|(_, m, c, _)| m == "it broke" && *c == 3)
        .and_then(|(_, _, _, e)| e.metadata.name.clone())
        .ok_or_else(|| anyhow::anyhow!("no counted event in {seen:?}"))?;
    events.delete(&counted, &DeleteParams::default()).await?;
    recorder
        .record(&map, EventType::Warning, "Broken", "it broke")
        .await;
    recorder
        .record(&map, EventType::Warning, "Broken", "it broke")
        .await;
    let seen = events_about(&events, "settings").await?;
    let mine: Vec<_> = seen
        .iter()
        .filter(|(_, m, _, e)| {
            m == "it broke"
                && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("test-controller")
        })
        .map(|(_, _, c, e)| (*c, e.metadata.name.clone()))
        .collect();
    assert_eq!(mine.len(), 1, "{seen:?}");
    assert_eq!(mine[0].0, 2, "{seen:?}");
    assert_ne!(mine[0].1.as_deref(), Some(counted.as_str()));
    Ok(())
}
