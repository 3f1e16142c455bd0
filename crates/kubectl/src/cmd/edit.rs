//! `kubectl edit TYPE NAME`: write the object as YAML to a temporary file under upstream's header,
//! run `$KUBE_EDITOR` / `$EDITOR` (default `vi`) on it, and send what changed as a JSON patch. When
//! the server refuses the change the file is reopened with the failure at the top, as upstream does.

use serde_json::Value;

use super::{get_object, parse_targets, resolve_targets, scope};
use crate::cli::EditArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// The comment upstream puts above the object.
pub const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,\n# and an empty file will abort the edit. If an error occurs while saving this file will be\n# reopened with the relevant failures.\n#\n";

/// The editor command: `$KUBE_EDITOR`, else `$EDITOR`, else `vi`.
pub fn editor() -> String {
    ["KUBE_EDITOR", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".into())
}

/// Strips `#` comment lines; `None` when nothing but whitespace is left (abort).
pub fn strip_comments(text: &str) -> Option<String> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    (!body.trim().is_empty()).then_some(body)
}

/// The comment block describing why the last save failed.
pub fn error_header(resource: &str, name: &str, message: &str) -> String {
    format!("# {resource} {name:?} was not valid:\n# * {message}\n#\n")
}

async fn run_editor(path: &std::path::Path) -> Result<()> {
    let command = format!("{} {:?}", editor(), path.display().to_string());
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .await
        .map_err(|e| Error::io(format!("running editor {command:?}"), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "there was a problem with the editor {:?}",
            editor()
        )))
    }
}

/// Runs `kubectl edit`.
pub async fn run(s: &mut Session, args: EditArgs) -> Result<()> {
    let as_json = match args.output.as_deref() {
        None | Some("yaml") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Error::Usage(format!(
                "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,yaml"
            )))
        }
    };
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    for (info, names) in resolve_targets(&catalog, &parse_targets(&args.args)?)? {
        let ns = scope(&info, Some(&namespace));
        for name in names {
            let original = get_object(&client, &info, ns.as_deref(), &name).await?;
            let yaml = if as_json {
                crate::printers::object::to_json(&original)?
            } else {
                crate::printers::yaml::to_yaml(&original)
            };
            let file = tempfile::Builder::new()
                .prefix("kubectl-edit-")
                .suffix(".yaml")
                .tempfile()
                .map_err(|e| Error::io("creating a temporary file", e))?;
            let path = file.path().to_path_buf();
            let mut content = format!("{HEADER}{yaml}");
            let mut last_error: Option<Error> = None;
            loop {
                std::fs::write(&path, &content)
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                run_editor(&path).await?;
                let edited_text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                let Some(body) = strip_comments(&edited_text) else {
                    return Err(Error::Usage("Edit cancelled, no objects made.".into()));
                };
                if edited_text == content {
                    if let Some(e) = last_error.take() {
                        return Err(e);
                    }
                }
                let edited: Value = serde_yaml_ng::from_str(&body)
                    .map_err(|e| Error::Usage(format!("error parsing edited object: {e}")))?;
                let patch = json_patch::diff(&original, &edited);
                if patch.0.is_empty() {
                    s.eprint("Edit cancelled, no changes made.\n")?;
                    break;
                }
                let api = super::dynamic_api(client.clone(), &info, ns.as_deref());
                let params = kube::api::PatchParams::default();
                match api
                    .patch(&name, &params, &kube::api::Patch::Json::<()>(patch))
                    .await
                {
                    Ok(_) => {
                        s.print(&format!("{}/{name} edited\n", info.group_kind()))?;
                        break;
                    }
                    Err(kube::Error::Api(status)) => {
                        let header = error_header(&info.group_resource(), &name, &status.message);
                        content = format!("{HEADER}{header}{body}");
                        last_error = Some(Error::Api(status));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_stripped_and_empty_files_abort() {
        assert_eq!(
            strip_comments("# x\na: 1\n  # y\nb: 2\n").as_deref(),
            Some("a: 1\nb: 2\n")
        );
        assert_eq!(strip_comments("# only\n\n"), None);
    }

    #[test]
    fn save_failures_are_described_as_upstream_does() {
        assert_eq!(
            error_header("deployments.apps", "web", "boom"),
            "# deployments.apps \"web\" was not valid:\n# * boom\n#\n"
        );
    }
}
