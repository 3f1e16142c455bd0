//! The one error type of kubectl, printed the way upstream's `cmdutil.CheckErr` prints it:
//! `Error from server (Reason): message` for API errors, `error: message` for everything else,
//! and a bare `command terminated with exit code N` (exit status N) for a failed remote command.

use kube::core::Status;

/// Why a kubectl command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver answered with a `Status` failure.
    #[error("{}", api_message(.0))]
    Api(Box<Status>),
    /// An API failure whose message already names the step that failed (`error when creating "f": ...`).
    #[error("{}", api_message(.0))]
    ApiStep(Box<Status>),
    /// Nothing listens at the server address (upstream's wording, without `error:`).
    #[error(
        "The connection to the server {0} was refused - did you specify the right host or port?"
    )]
    ConnectionRefused(String),
    /// Talking to the apiserver failed below the API level (connection, TLS, decoding).
    #[error("{0}")]
    Client(#[source] kube::Error),
    /// The kubeconfig could not be loaded.
    #[error("{0}")]
    Kubeconfig(String),
    /// The kubeconfig loaded but is inconsistent (upstream prints these without `error:`).
    #[error("Error in configuration: {0}")]
    Configuration(String),
    /// The command line is wrong (bad arguments, unknown resource type, bad manifest).
    #[error("{0}")]
    Usage(String),
    /// Reading a file or writing output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest could not be parsed.
    #[error("error parsing {path}: {message}")]
    Manifest {
        /// The file (or `STDIN`).
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A wait gave up.
    #[error("{0}")]
    Timeout(String),
    /// The remote command exited non-zero.
    #[error("command terminated with exit code {0}")]
    ExitCode(i32),
    /// A command that already said everything it had to and only sets the exit status (`auth can-i`
    /// answering "no").
    #[error("")]
    Silent(i32),
    /// Several independent failures (one line each), as upstream aggregates them.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Many(Vec<Error>),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_message(status: &Status) -> String {
    match status.reason.as_str() {
        "Unauthorized" => format!("You must be logged in to the server ({})", status.message),
        "" => format!("Error from server: {}", status.message),
        reason => format!("Error from server ({reason}): {}", status.message),
    }
}

/// Upstream's wording for a 422: `The Kind "name" is invalid: field: message` (one cause), the
/// causes as `* ` lines (several), or `The request is invalid: message` without details.
fn invalid_message(status: &Status) -> String {
    let details = status.details.as_ref();
    let prefix = match details {
        Some(d) if !d.kind.is_empty() || !d.name.is_empty() => {
            format!("The {} \"{}\" is invalid", d.kind, d.name)
        }
        _ => "The request is invalid".to_string(),
    };
    let causes: Vec<String> = details
        .map(|d| {
            d.causes
                .iter()
                .map(|c| {
                    if c.field.is_empty() {
                        c.message.clone()
                    } else {
                        format!("{}: {}", c.field, c.message)
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    match causes.len() {
        0 => format!("{prefix}: {}", status.message),
        1 => format!("{prefix}: {}", causes[0]),
        _ => format!("{prefix}: \n* {}", causes.join("\n* ")),
    }
}

impl Error {
    /// The process exit status that goes with this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ExitCode(code) | Error::Silent(code) => *code,
            _ => 1,
        }
    }

    /// What upstream prints on stderr for this error (without the trailing newline).
    pub fn report(&self) -> String {
        match self {
            Error::Api(status) | Error::ApiStep(status) if status.reason == "Invalid" => {
                invalid_message(status)
            }
            Error::Api(status) | Error::ApiStep(status) if status.reason != "Unauthorized" => {
                self.to_string()
            }
            Error::Silent(_) => String::new(),
            Error::ExitCode(_) | Error::Configuration(_) | Error::ConnectionRefused(_) => {
                self.to_string()
            }
            Error::Many(errors) => errors
                .iter()
                .map(Error::report)
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("error: {other}"),
        }
    }

    /// Whether this is the apiserver saying the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api(status) if status.code == 404)
    }

    /// Whether the underlying failure was a refused TCP connection.
    pub fn is_connection_refused(&self) -> bool {
        let Error::Client(err) = self else {
            return false;
        };
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    return true;
                }
            }
            source = e.source();
        }
        false
    }

    /// Builds an [`Error::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<kube::Error> for Error {
    fn from(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => Error::Api(status),
            other => Error::Client(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Box<Status> {
        Box::new(Status {
            code,
            reason: reason.to_string(),
            message: message.to_string(),
            ..Status::default()
        })
    }

    #[test]
    fn errors_are_reported_like_upstream() {
        let cases = [
            (
                Error::Api(status(404, "NotFound", r#"pods "x" not found"#)),
                r#"Error from server (NotFound): pods "x" not found"#,
                1,
            ),
            (
                Error::Api(status(500, "", "boom")),
                "Error from server: boom",
                1,
            ),
            (
                Error::Api(status(401, "Unauthorized", "Unauthorized")),
                "error: You must be logged in to the server (Unauthorized)",
                1,
            ),
            (
                Error::Usage(r#"the server doesn't have a resource type "foo""#.into()),
                r#"error: the server doesn't have a resource type "foo""#,
                1,
            ),
            (Error::ExitCode(3), "command terminated with exit code 3", 3),
        ];
        for (err, want, code) in cases {
            assert_eq!(err.report(), want);
            assert_eq!(err.exit_code(), code);
        }
    }

    #[test]
    fn not_found_is_recognised_from_the_status_code() {
        assert!(Error::Api(status(404, "NotFound", "x")).is_not_found());
        assert!(!Error::Api(status(409, "AlreadyExists", "x")).is_not_found());
    }
}
