//! `kubectl api-resources`: the discovered resources, sorted by group then name.

use crate::cli::ApiResourcesArgs;
use crate::discovery::ResourceInfo;
use crate::error::Result;
use crate::printers::tabwriter::align;
use crate::session::Session;

/// Renders the resources as upstream does.
pub fn render(resources: &[ResourceInfo], args: &ApiResourcesArgs) -> String {
    let mut selected: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| args.namespaced.is_none_or(|n| r.namespaced == n))
        .filter(|r| args.api_group.as_deref().is_none_or(|g| r.group == g))
        .filter(|r| args.verbs.iter().all(|v| r.verbs.contains(v)))
        .collect();
    selected.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
    let wide = args.output.as_deref() == Some("wide");
    if args.output.as_deref() == Some("name") {
        return selected.iter().map(|r| r.group_resource() + "\n").collect();
    }
    let mut rows = Vec::new();
    if !args.no_headers {
        let mut header: Vec<String> = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if wide {
            header.push("VERBS".into());
            header.push("CATEGORIES".into());
        }
        rows.push(header);
    }
    for r in selected {
        let mut row = vec![
            r.plural.clone(),
            r.short_names.join(","),
            r.api_version(),
            r.namespaced.to_string(),
            r.kind.clone(),
        ];
        if wide {
            row.push(format!("[{}]", r.verbs.join(" ")));
            row.push(r.categories.join(","));
        }
        rows.push(row);
    }
    align(&rows)
}

/// Runs `kubectl api-resources`.
pub async fn run(s: &mut Session, args: ApiResourcesArgs) -> Result<()> {
    let catalog = s.catalog().await?.clone();
    s.print(&render(catalog.all(), &args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::fixtures::catalog;

    fn args(output: Option<&str>, namespaced: Option<bool>) -> ApiResourcesArgs {
        ApiResourcesArgs {
            namespaced,
            api_group: None,
            verbs: vec![],
            output: output.map(str::to_string),
            no_headers: false,
        }
    }

    #[test]
    fn resources_are_listed_by_group_then_name() {
        let text = render(catalog().all(), &args(None, None));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME          SHORTNAMES   APIVERSION       NAMESPACED   KIND"
        );
        assert_eq!(
            lines[1],
            "configmaps    cm           v1               true         ConfigMap"
        );
        assert!(lines[5].starts_with("services"));
        assert!(lines[6].starts_with("deployments   deploy       apps/v1"));
        assert!(lines[8].starts_with("widgets"));
    }

    #[test]
    fn filters_and_name_output_work() {
        let text = render(catalog().all(), &args(Some("name"), Some(false)));
        assert_eq!(text, "namespaces\nnodes\n");
    }
}
