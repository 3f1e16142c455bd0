//! Command-line errors worded as upstream's cobra prints them (`unknown flag`, `unknown command`).

/// The message upstream prints for a command-line parsing error (clap's own wording otherwise).
pub fn upstream_usage_error(err: &clap::Error, argv: &[String]) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let invalid = match err
        .get(ContextKind::InvalidArg)
        .or_else(|| err.get(ContextKind::InvalidSubcommand))
    {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let words = command_words(argv);
    let command = words.first().cloned().unwrap_or_default();
    match err.kind() {
        ErrorKind::InvalidSubcommand => {
            if words.len() > 1 {
                format!("error: unknown command \"{invalid}\"\nSee 'kubectl {command} -h' for help and examples")
            } else {
                format!("error: unknown command \"{invalid}\" for \"kubectl\"")
            }
        }
        ErrorKind::UnknownArgument => {
            let flag = invalid.split('=').next().unwrap_or(&invalid).to_string();
            let flag = if flag.starts_with("--") {
                format!("unknown flag: {flag}")
            } else {
                format!(
                    "unknown shorthand flag: '{}' in {flag}",
                    flag.trim_start_matches('-').chars().next().unwrap_or('?')
                )
            };
            format!("error: {flag}\nSee 'kubectl {command} --help' for usage.")
        }
        _ => err.to_string().trim_end().to_string(),
    }
}

/// Global flags whose value is the next word when not written `--flag=value`.
const VALUED_GLOBALS: [&str; 21] = [
    "--kubeconfig",
    "--context",
    "-n",
    "--namespace",
    "--request-timeout",
    "-v",
    "--v",
    "--as",
    "--as-group",
    "--as-uid",
    "-s",
    "--server",
    "--cluster",
    "--user",
    "--token",
    "--certificate-authority",
    "--client-certificate",
    "--client-key",
    "--tls-server-name",
    "--username",
    "--password",
];

/// The words of the command line that are not flags or the values of global flags.
fn command_words(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in argv.iter().skip(1) {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if arg.starts_with('-') {
            skip_value = VALUED_GLOBALS.contains(&arg.as_str());
            continue;
        }
        out.push(arg.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Options;
    use clap::Parser;

    fn message(argv: &[&str]) -> Option<String> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        Options::try_parse_from(&argv)
            .err()
            .map(|e| upstream_usage_error(&e, &argv))
    }

    #[test]
    fn usage_errors_read_like_upstream() {
        assert_eq!(
            message(&["kubectl", "frob"]).as_deref(),
            Some("error: unknown command \"frob\" for \"kubectl\"")
        );
        assert_eq!(
            message(&["kubectl", "rollout", "frob"]).as_deref(),
            Some("error: unknown command \"frob\"\nSee 'kubectl rollout -h' for help and examples")
        );
        assert_eq!(
            message(&["kubectl", "-n", "x", "top", "frob"]).as_deref(),
            Some("error: unknown command \"frob\"\nSee 'kubectl top -h' for help and examples")
        );
        assert_eq!(
            message(&["kubectl", "get", "pods", "--bogus"]).as_deref(),
            Some("error: unknown flag: --bogus\nSee 'kubectl get --help' for usage.")
        );
        assert_eq!(
            message(&["kubectl", "get", "pods", "-Z"]).as_deref(),
            Some("error: unknown shorthand flag: 'Z' in -Z\nSee 'kubectl get --help' for usage.")
        );
    }

    #[test]
    fn upstream_command_lines_parse() {
        let lines: [&[&str]; 10] = [
            &[
                "kubectl",
                "get",
                "pods",
                "-A",
                "-o",
                "wide",
                "--show-labels",
            ],
            &["kubectl", "-n", "kube-system", "get", "svc", "-ojson"],
            &["kubectl", "apply", "-f", "-"],
            &[
                "kubectl",
                "delete",
                "pod",
                "x",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ],
            &[
                "kubectl",
                "logs",
                "deploy/web",
                "-c",
                "c",
                "-f",
                "--tail=10",
                "--since=5m",
                "--timestamps",
            ],
            &[
                "kubectl", "exec", "-it", "web", "-c", "c", "--", "sh", "-c", "echo hi",
            ],
            &["kubectl", "scale", "deployment/web", "--replicas=3"],
            &[
                "kubectl",
                "rollout",
                "status",
                "deployment/web",
                "--timeout=60s",
            ],
            &[
                "kubectl",
                "create",
                "deployment",
                "web",
                "--image=busybox:1.35",
                "--replicas=2",
                "--port=80",
                "--",
                "httpd",
                "-f",
            ],
            &[
                "kubectl",
                "wait",
                "--for=condition=Ready",
                "pod/x",
                "--timeout=30s",
                "--request-timeout=5s",
                "-v",
                "6",
            ],
        ];
        for line in lines {
            assert!(Options::try_parse_from(line).is_ok(), "{line:?}");
        }
    }
}
