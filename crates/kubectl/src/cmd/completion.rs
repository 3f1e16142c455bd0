//! `kubectl completion bash|zsh`: a small shell script that asks the binary itself what to
//! complete (`kubectl __complete WORD... CURRENT`, one candidate per line), so completion always
//! follows our real command tree: commands and subcommands and their flags from the clap
//! definition, and from the server resource types, object names of the typed resource, pods,
//! namespaces (`-n`) and contexts (`--context`).

use clap::CommandFactory;

use super::{list_objects, resolve_targets, Target};
use crate::cli::{CompletionArgs, GlobalFlags, Options};
use crate::error::{Error, Result};
use crate::session::{Io, Session};

/// The bash script (bash 4+; works with or without the bash-completion package).
pub const BASH: &str = r#"# bash completion for kubectl                              -*- shell-script -*-
#
# Load it in the current shell with: source <(kubectl completion bash)

__kubectl_complete()
{
    local line="${COMP_LINE:0:COMP_POINT}"
    local -a words
    read -r -a words <<< "$line"
    if [[ "$line" =~ [[:space:]]$ ]]; then
        words+=("")
    fi
    local cur="${words[${#words[@]}-1]}"
    local IFS=$'\n'
    COMPREPLY=($("${words[0]}" __complete "${words[@]:1}" 2>/dev/null))
    # bash splits "--flag=value" at "=": complete only what follows it.
    if [[ "$cur" == *=* && "${COMP_WORDS[COMP_CWORD]}" != "$cur" ]]; then
        COMPREPLY=("${COMPREPLY[@]#*=}")
    fi
    return 0
}

complete -o default -F __kubectl_complete kubectl
"#;

/// The zsh script (zsh 5.2+), usable with `source <(...)` or as an autoloaded `_kubectl`.
pub const ZSH: &str = r#"#compdef kubectl
# zsh completion for kubectl                              -*- shell-script -*-
#
# Load it in the current shell with: source <(kubectl completion zsh)

_kubectl()
{
    local -a candidates
    candidates=("${(@f)$("${words[1]}" __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    candidates=("${(@)candidates:#}")
    compadd -- "${(@)candidates}"
}

if [ "$funcstack[1]" = "_kubectl" ]; then
    _kubectl "$@"
else
    compdef _kubectl kubectl
fi
"#;

/// Runs `kubectl completion SHELL`.
pub fn run(s: &mut Session, args: CompletionArgs) -> Result<()> {
    let see = "\nSee 'kubectl completion -h' for help and examples";
    let shell = match args.shell.as_slice() {
        [] => return Err(Error::Usage(format!("Shell not specified.{see}"))),
        [shell] => shell.as_str(),
        _ => {
            return Err(Error::Usage(format!(
                "Too many arguments. Expected only the shell type.{see}"
            )))
        }
    };
    match shell {
        "bash" => s.print(BASH),
        "zsh" => s.print(ZSH),
        other => Err(Error::Usage(format!(
            "Unsupported shell type \"{other}\".{see}"
        ))),
    }
}

/// What the words typed so far say about the word being completed.
#[derive(Debug, PartialEq)]
pub enum Want {
    /// Fixed words (subcommands, flags, flag values), already filtered by the prefix.
    Words(Vec<String>),
    /// Resource types known to the server.
    Types,
    /// Names of objects of a type (`TYPE` or the part before `/` in `TYPE/NAME`).
    Names {
        /// The type as typed.
        type_name: String,
        /// Whether candidates are written `TYPE/NAME`.
        slash: bool,
    },
    /// Namespace names.
    Namespaces,
    /// Kubeconfig context names.
    Contexts,
}

/// Commands whose first argument is a resource type (or `TYPE/NAME`).
const RESOURCE_COMMANDS: [&str; 19] = [
    "get",
    "describe",
    "delete",
    "edit",
    "label",
    "annotate",
    "patch",
    "scale",
    "autoscale",
    "wait",
    "status",
    "history",
    "undo",
    "pause",
    "resume",
    "restart",
    "resources",
    "env",
    "image",
];

/// Commands whose first argument is a pod.
const POD_COMMANDS: [&str; 5] = ["logs", "exec", "attach", "port-forward", "cp"];

/// Works out what to complete from the words after `kubectl` (the last one is the word being
/// completed, possibly empty) using the clap command tree.
pub fn classify(words: &[String]) -> Want {
    let mut root = Options::command();
    root.build();
    let (current, before) = match words.split_last() {
        Some((current, before)) => (current.as_str(), before),
        None => ("", &[][..]),
    };
    let mut command = &root;
    let mut positionals: Vec<&str> = Vec::new();
    let mut pending_flag: Option<String> = None;
    for word in before {
        if pending_flag.take().is_some() {
            continue;
        }
        if word == "--" {
            break;
        }
        if let Some(flag) = word.strip_prefix('-') {
            if !word.contains('=') && takes_value(command, flag) {
                pending_flag = Some(word.clone());
            }
            continue;
        }
        if positionals.is_empty() {
            if let Some(sub) = command
                .get_subcommands()
                .find(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word))
            {
                command = sub;
                continue;
            }
        }
        positionals.push(word);
    }
    if let Some(flag) = pending_flag {
        return flag_value(&flag, current);
    }
    if let Some((flag, _)) = current.split_once('=').filter(|(f, _)| f.starts_with('-')) {
        return match flag_value(flag, "") {
            Want::Words(values) => Want::Words(prefixed(
                values.iter().map(|v| format!("{flag}={v}")),
                current,
            )),
            other => other,
        };
    }
    if current.starts_with('-') {
        let flags = command
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")));
        return Want::Words(prefixed(flags, current));
    }
    if command.has_subcommands() && positionals.is_empty() {
        let subs = command
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
            .map(|c| c.get_name().to_string());
        return Want::Words(prefixed(subs, current));
    }
    let name = command.get_name();
    if name == "completion" && positionals.is_empty() {
        return Want::Words(prefixed(["bash", "zsh"].map(String::from), current));
    }
    if ["cordon", "uncordon", "drain"].contains(&name) {
        return Want::Names {
            type_name: "nodes".into(),
            slash: false,
        };
    }
    if POD_COMMANDS.contains(&name) && positionals.is_empty() {
        return Want::Names {
            type_name: "pods".into(),
            slash: false,
        };
    }
    if RESOURCE_COMMANDS.contains(&name) {
        if let Some((type_name, _)) = current.split_once('/') {
            return Want::Names {
                type_name: type_name.to_string(),
                slash: true,
            };
        }
        match positionals.first() {
            None => return Want::Types,
            Some(first) if !first.contains('/') => {
                return Want::Names {
                    type_name: first.split(',').next().unwrap_or(first).to_string(),
                    slash: false,
                }
            }
            Some(_) => {}
        }
    }
    Want::Words(Vec::new())
}

fn takes_value(command: &clap::Command, flag: &str) -> bool {
    let arg = match flag.strip_prefix('-') {
        Some(long) => command.get_arguments().find(|a| a.get_long() == Some(long)),
        None => {
            let short = flag.chars().last();
            command.get_arguments().find(|a| a.get_short() == short)
        }
    };
    arg.is_some_and(|a| {
        a.get_action().takes_values() && a.get_num_args().is_none_or(|n| n.min_values() > 0)
    })
}

fn flag_value(flag: &str, current: &str) -> Want {
    match flag {
        "-n" | "--namespace" => Want::Namespaces,
        "--context" => Want::Contexts,
        "-o" | "--output" => Want::Words(prefixed(
            [
                "json",
                "yaml",
                "name",
                "wide",
                "jsonpath=",
                "custom-columns=",
            ]
            .map(String::from),
            current,
        )),
        "--dry-run" => Want::Words(prefixed(
            ["none", "client", "server"].map(String::from),
            current,
        )),
        _ => Want::Words(Vec::new()),
    }
}

fn prefixed(words: impl IntoIterator<Item = String>, current: &str) -> Vec<String> {
    let mut out: Vec<String> = words
        .into_iter()
        .filter(|w| w.starts_with(current))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The global flags (`--kubeconfig`, `--context`, `-n`) found among the typed words.
fn global_flags(words: &[String]) -> GlobalFlags {
    let mut flags = GlobalFlags {
        request_timeout: "5s".into(),
        ..GlobalFlags::default()
    };
    let mut iter = words.iter().peekable();
    while let Some(word) = iter.next() {
        let (name, inline) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (word.as_str(), None),
        };
        let slot = match name {
            "--kubeconfig" => &mut flags.kubeconfig,
            "--context" => &mut flags.context,
            "-n" | "--namespace" => &mut flags.namespace,
            "-s" | "--server" => &mut flags.server,
            _ => continue,
        };
        *slot = inline.or_else(|| iter.next().cloned());
    }
    flags
}

/// Answers `kubectl __complete WORD...`: the candidates, one per line. Failures to reach the
/// server just mean no dynamic candidates.
pub async fn complete(words: &[String]) -> Vec<String> {
    let current = words.last().map(String::as_str).unwrap_or("");
    let want = classify(words);
    let before = &words[..words.len().saturating_sub(1)];
    let session = Session::new(global_flags(before), Io::buffers().0);
    let dynamic = async {
        let candidates: Vec<String> = match want {
            Want::Words(words) => return Ok::<_, Error>(words),
            Want::Types => session
                .catalog()
                .await?
                .all()
                .iter()
                .filter(|r| r.verbs.iter().any(|v| v == "get"))
                .map(|r| {
                    if r.group.is_empty() {
                        r.plural.clone()
                    } else {
                        format!("{}.{}", r.plural, r.group)
                    }
                })
                .collect(),
            Want::Names { type_name, slash } => {
                let names = object_names(&session, &type_name).await?;
                if slash {
                    names
                        .into_iter()
                        .map(|n| format!("{type_name}/{n}"))
                        .collect()
                } else {
                    names
                }
            }
            Want::Namespaces => object_names(&session, "namespaces").await?,
            Want::Contexts => crate::session::read_kubeconfig(&session.flags)?
                .contexts
                .into_iter()
                .map(|c| c.name)
                .collect(),
        };
        Ok(prefixed(candidates, current))
    };
    dynamic.await.unwrap_or_default()
}

async fn object_names(session: &Session, type_name: &str) -> Result<Vec<String>> {
    let client = session.client().await?;
    let catalog = session.catalog().await?;
    let namespace = session.namespace().await?;
    let target = Target {
        type_name: type_name.to_string(),
        names: Vec::new(),
    };
    let mut out = Vec::new();
    for (info, _) in resolve_targets(catalog, &[target])? {
        let ns = super::scope(&info, Some(&namespace));
        for object in list_objects(&client, &info, ns.as_deref(), &Default::default()).await? {
            out.push(super::name_of(&object).to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(line: &str) -> Want {
        let mut words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if line.ends_with(' ') || line.is_empty() {
            words.push(String::new());
        }
        classify(&words)
    }

    fn words(list: &[&str]) -> Want {
        Want::Words(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn commands_and_subcommands_complete_from_the_command_tree() {
        assert_eq!(want("ro"), words(&["rollout"]));
        assert_eq!(want("set "), words(&["env", "image", "resources"]));
        assert_eq!(want("top "), words(&["node", "pod"]));
        assert_eq!(want("rollout st"), words(&["status"]));
        assert_eq!(want("completion "), words(&["bash", "zsh"]));
        let Want::Words(all) = want("") else {
            panic!("top level")
        };
        for command in ["autoscale", "replace", "top", "completion", "get", "apply"] {
            assert!(all.iter().any(|c| c == command), "{command} in {all:?}");
        }
    }

    #[test]
    fn flags_and_their_values_complete() {
        assert_eq!(want("autoscale --ma"), words(&["--max"]));
        assert_eq!(want("set env --li"), words(&["--list"]));
        assert_eq!(
            want("get pods -o "),
            words(&[
                "custom-columns=",
                "json",
                "jsonpath=",
                "name",
                "wide",
                "yaml"
            ])
        );
        assert_eq!(want("get pods --output=y"), words(&["--output=yaml"]));
        assert_eq!(want("get -n "), Want::Namespaces);
        assert_eq!(want("--context "), Want::Contexts);
        let Want::Words(global) = want("top pod --") else {
            panic!("flags")
        };
        assert!(global.iter().any(|f| f == "--kubeconfig"));
        assert!(global.iter().any(|f| f == "--containers"));
    }

    #[test]
    fn resources_and_names_complete_from_the_server() {
        assert_eq!(want("get "), Want::Types);
        assert_eq!(want("-n kube-system get "), Want::Types);
        assert_eq!(
            want("describe deploy "),
            Want::Names {
                type_name: "deploy".into(),
                slash: false
            }
        );
        assert_eq!(
            want("set env deploy/w"),
            Want::Names {
                type_name: "deploy".into(),
                slash: true
            }
        );
        assert_eq!(
            want("logs "),
            Want::Names {
                type_name: "pods".into(),
                slash: false
            }
        );
        assert_eq!(want("exec web -- "), words(&[]));
    }

    #[test]
    fn global_flags_are_picked_from_the_words() {
        let words: Vec<String> = ["--kubeconfig=/k", "-n", "x", "get"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let flags = global_flags(&words);
        assert_eq!(flags.kubeconfig.as_deref(), Some("/k"));
        assert_eq!(flags.namespace.as_deref(), Some("x"));
    }
}
