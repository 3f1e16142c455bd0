//! `kubectl wait --for=delete|condition=C[=V]|jsonpath='{...}'=V TYPE/NAME... [--timeout=30s]`:
//! watches each object until the condition holds and prints `kind/name condition met`.

use std::time::Duration;

use kube::api::DynamicObject;
use kube::runtime::wait::await_condition;
use serde_json::Value;

use super::create::finish;
use super::{
    dynamic_api, list_objects, list_params, name_of, parse_targets, resolve_targets, scope,
};
use crate::cli::WaitArgs;
use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::printers::jsonpath::{value_text, Template};
use crate::session::Session;

/// What to wait for.
#[derive(Clone, Debug, PartialEq)]
pub enum WaitFor {
    /// The object is gone.
    Delete,
    /// `status.conditions[type=NAME].status == VALUE` (case-insensitive type).
    Condition(String, String),
    /// A JSONPath's value equals VALUE (or exists, when no value is given).
    JsonPath(String, Option<String>),
}

impl WaitFor {
    /// Parses `--for`.
    pub fn parse(text: &str) -> Result<Self> {
        if text.eq_ignore_ascii_case("delete") {
            return Ok(WaitFor::Delete);
        }
        if let Some(rest) = text.strip_prefix("condition=") {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, v),
                None => (rest, "True"),
            };
            return Ok(WaitFor::Condition(name.to_string(), value.to_string()));
        }
        if let Some(rest) = text.strip_prefix("jsonpath=") {
            let (path, value) = match rest.rfind("}=") {
                Some(i) => (&rest[..=i], Some(rest[i + 2..].to_string())),
                None => (rest, None),
            };
            let path = if path.starts_with('{') {
                path.to_string()
            } else {
                format!("{{{path}}}")
            };
            Template::parse(&path)?;
            return Ok(WaitFor::JsonPath(path, value));
        }
        Err(Error::Usage(format!("unrecognized condition: \"{text}\"")))
    }

    /// Whether an object satisfies the condition (`None` = object absent).
    pub fn holds(&self, object: Option<&Value>) -> bool {
        match (self, object) {
            (WaitFor::Delete, object) => object.is_none(),
            (_, None) => false,
            (WaitFor::Condition(name, value), Some(object)) => object["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(name))
                        && c["status"]
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(value))
                }),
            (WaitFor::JsonPath(path, value), Some(object)) => {
                let values = Template::parse(path)
                    .map(|t| t.values(object))
                    .unwrap_or_default();
                match value {
                    None => !values.is_empty(),
                    Some(want) => values.len() == 1 && value_text(&values[0]) == *want,
                }
            }
        }
    }
}

/// Runs `kubectl wait`.
pub async fn run(s: &mut Session, args: WaitArgs) -> Result<()> {
    let condition = WaitFor::parse(&args.for_condition)?;
    let timeout = parse_duration(&args.timeout, false)?;
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let targets = parse_targets(&args.args)?;
    let mut objects = Vec::new();
    for (info, names) in resolve_targets(&catalog, &targets)? {
        let ns = scope(&info, Some(&namespace));
        if names.is_empty() {
            let params = list_params(args.selector.as_deref(), None);
            for o in list_objects(&client, &info, ns.as_deref(), &params).await? {
                objects.push((info.clone(), ns.clone(), name_of(&o).to_string()));
            }
        }
        for name in names {
            objects.push((info.clone(), ns.clone(), name));
        }
    }
    if objects.is_empty() && condition != WaitFor::Delete {
        return Err(Error::Usage("no matching resources found".into()));
    }
    let mut errors = Vec::new();
    for (info, ns, name) in objects {
        let api = dynamic_api(client.clone(), &info, ns.as_deref());
        let exists = match api.get_opt(&name).await? {
            Some(o) => Some(o),
            None if condition == WaitFor::Delete => continue,
            None => {
                errors.push(Error::Api(Box::new(kube::core::Status {
                    code: 404,
                    reason: "NotFound".into(),
                    message: format!("{} \"{name}\" not found", info.group_resource()),
                    ..kube::core::Status::default()
                })));
                continue;
            }
        };
        let uid = exists.and_then(|o| o.metadata.uid);
        let cond = condition.clone();
        let check = move |o: Option<&DynamicObject>| {
            let o = o.filter(|o| cond != WaitFor::Delete || o.metadata.uid == uid);
            let value = o.and_then(|o| serde_json::to_value(o).ok());
            cond.holds(value.as_ref())
        };
        let waited = tokio::time::timeout(
            if timeout.is_zero() {
                Duration::from_secs(1)
            } else {
                timeout
            },
            await_condition(api, &name, check),
        )
        .await;
        match waited {
            Ok(Ok(_)) => s.print(&format!("{}/{name} condition met\n", info.group_kind()))?,
            Ok(Err(e)) => errors.push(Error::Usage(format!("waiting for {name}: {e}"))),
            Err(_) => errors.push(Error::Timeout(format!(
                "timed out waiting for the condition on {}/{name}",
                info.group_resource()
            ))),
        }
    }
    finish(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn for_flags_parse() {
        let cases = [
            ("delete", Some(WaitFor::Delete)),
            (
                "condition=Ready",
                Some(WaitFor::Condition("Ready".into(), "True".into())),
            ),
            (
                "condition=Available=false",
                Some(WaitFor::Condition("Available".into(), "false".into())),
            ),
            (
                "jsonpath={.status.phase}=Running",
                Some(WaitFor::JsonPath(
                    "{.status.phase}".into(),
                    Some("Running".into()),
                )),
            ),
            (
                "jsonpath=.status.podIP",
                Some(WaitFor::JsonPath("{.status.podIP}".into(), None)),
            ),
            ("ready", None),
        ];
        for (text, want) in cases {
            assert_eq!(WaitFor::parse(text).ok(), want, "{text}");
        }
    }

    #[test]
    fn conditions_are_checked_on_objects() {
        let pod = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(WaitFor::Condition("ready".into(), "True".into()).holds(Some(&pod)));
        assert!(!WaitFor::Condition("Ready".into(), "False".into()).holds(Some(&pod)));
        assert!(
            WaitFor::JsonPath("{.status.phase}".into(), Some("Running".into())).holds(Some(&pod))
        );
        assert!(!WaitFor::Delete.holds(Some(&pod)));
        assert!(WaitFor::Delete.holds(None));
    }
}
