//! `kubectl events`: core/v1 Events sorted by when they were last seen, in upstream's
//! `LAST SEEN  TYPE  REASON  OBJECT  MESSAGE` table (`--for`, `--types`, `-A`, `-o`).

use serde_json::Value;

use super::{list_objects, parse_targets};
use crate::cli::EventsArgs;
use crate::error::{Error, Result};
use crate::printers::age::age_of;
use crate::printers::object::print_objects;
use crate::printers::{tabwriter, OutputFormat};
use crate::session::Session;

fn nonempty(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// When an event was last seen (series, then lastTimestamp, then eventTime), for sorting.
pub fn last_seen(e: &Value) -> String {
    nonempty(&e["series"]["lastObservedTime"])
        .or_else(|| nonempty(&e["lastTimestamp"]))
        .or_else(|| nonempty(&e["eventTime"]))
        .unwrap_or("")
        .to_string()
}

fn sortable(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_microsecond())
        .unwrap_or(0)
}

/// The LAST SEEN cell: `5m`, or `5m (x3 over 10m)` for repeated events.
pub fn interval(e: &Value) -> String {
    let first = match nonempty(&e["eventTime"]) {
        Some(t) => age_of(Some(t)),
        None => age_of(nonempty(&e["firstTimestamp"])),
    };
    if e["series"].is_object() {
        return format!(
            "{} (x{} over {first})",
            age_of(nonempty(&e["series"]["lastObservedTime"])),
            e["series"]["count"].as_i64().unwrap_or(0)
        );
    }
    let count = e["count"].as_i64().unwrap_or(0);
    if count > 1 {
        return format!(
            "{} (x{count} over {first})",
            age_of(nonempty(&e["lastTimestamp"]))
        );
    }
    first
}

/// The events table (rows already sorted).
pub fn table(events: &[Value], all_namespaces: bool, no_headers: bool) -> String {
    let mut rows = Vec::new();
    if !no_headers {
        let mut header = vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"];
        if all_namespaces {
            header.insert(0, "NAMESPACE");
        }
        rows.push(header.into_iter().map(str::to_string).collect::<Vec<_>>());
    }
    for e in events {
        let mut row = vec![
            interval(e),
            e["type"].as_str().unwrap_or("").to_string(),
            e["reason"].as_str().unwrap_or("").to_string(),
            format!(
                "{}/{}",
                e["involvedObject"]["kind"].as_str().unwrap_or(""),
                e["involvedObject"]["name"].as_str().unwrap_or("")
            ),
            e["message"].as_str().unwrap_or("").trim().to_string(),
        ];
        if all_namespaces {
            row.insert(
                0,
                e["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        rows.push(row);
    }
    tabwriter::align(&rows)
}

/// Runs `kubectl events`.
pub async fn run(s: &mut Session, args: EventsArgs) -> Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let info = catalog.resolve("events")?.clone();
    let ns = (!args.all_namespaces).then_some(namespace.as_str());
    let mut events = list_objects(&client, &info, ns, &Default::default()).await?;
    if let Some(target) = &args.for_object {
        let targets = parse_targets(std::slice::from_ref(target))?;
        let Some(t) = targets.first().filter(|t| t.names.len() == 1) else {
            return Err(Error::Usage(
                "--for must be in resource/name form".to_string(),
            ));
        };
        let resource = catalog.resolve(&t.type_name)?.clone();
        let name = t.names[0].clone();
        events.retain(|e| {
            e["involvedObject"]["kind"] == resource.kind.as_str()
                && e["involvedObject"]["apiVersion"] == resource.api_version().as_str()
                && e["involvedObject"]["name"] == name.as_str()
        });
    }
    if !args.types.is_empty() {
        let types: Vec<String> = args.types.iter().map(|t| t.to_lowercase()).collect();
        for t in &types {
            if t != "normal" && t != "warning" {
                return Err(Error::Usage(
                    "valid --types are Normal or Warning".to_string(),
                ));
            }
        }
        events.retain(|e| types.contains(&e["type"].as_str().unwrap_or("").to_lowercase()));
    }
    events.sort_by_key(|e| sortable(&last_seen(e)));
    match format {
        OutputFormat::Default | OutputFormat::Wide => {
            if events.is_empty() {
                let message = if args.all_namespaces {
                    "No events found.\n".to_string()
                } else {
                    format!("No events found in {namespace} namespace.\n")
                };
                return s.eprint(&message);
            }
            let text = table(&events, args.all_namespaces, args.no_headers);
            s.print(&text)
        }
        other => {
            let text = print_objects(&other, events, false, args.no_headers)?;
            s.print(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_events_show_their_count() {
        let e = json!({"count": 3, "firstTimestamp": "2000-01-01T00:00:00Z",
                       "lastTimestamp": "2000-01-01T00:00:00Z"});
        let text = interval(&e);
        assert!(text.contains("(x3 over "), "{text}");
        assert_eq!(interval(&json!({})), "<unknown>");
    }

    #[test]
    fn the_table_has_upstreams_columns() {
        let e = json!({"metadata": {"namespace": "default"}, "type": "Normal", "reason": "Scheduled",
                       "involvedObject": {"kind": "Pod", "name": "web"}, "message": "ok \n"});
        let text = table(&[e], true, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   LAST SEEN   TYPE     REASON      OBJECT    MESSAGE"
        );
        assert!(
            lines[1].ends_with("Normal   Scheduled   Pod/web   ok"),
            "{text}"
        );
    }

    #[test]
    fn events_sort_by_last_seen() {
        let a = json!({"lastTimestamp": "2024-01-01T00:00:02Z"});
        let b = json!({"eventTime": "2024-01-01T00:00:01.000000Z"});
        let mut v = [a.clone(), b.clone()];
        v.sort_by_key(|e| sortable(&last_seen(e)));
        assert_eq!(v, [b, a]);
    }
}
