//! Arguments of the generators (`create configmap|secret|job|...`), the node commands (cordon,
//! uncordon, taint, drain), rollout history/undo/pause/resume, events, auth and api-versions.

use clap::{Args, Subcommand};

/// `kubectl create configmap NAME`.
#[derive(Debug, Args)]
pub struct CreateConfigMapArgs {
    /// The config map name.
    pub name: String,
    /// A key and literal value (`key=value`).
    #[arg(long = "from-literal")]
    pub from_literal: Vec<String>,
    /// A file or directory (optionally `key=path`).
    #[arg(long = "from-file")]
    pub from_file: Vec<String>,
    /// A file of `KEY=VALUE` lines.
    #[arg(long = "from-env-file")]
    pub from_env_file: Vec<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl create secret <type>`.
#[derive(Debug, Args)]
pub struct CreateSecretArgs {
    /// The secret type.
    #[command(subcommand)]
    pub command: CreateSecretCommand,
}

/// `kubectl create secret generic|tls|docker-registry`.
#[derive(Debug, Subcommand)]
pub enum CreateSecretCommand {
    /// Create a secret from a local file, directory, or literal value.
    Generic(CreateSecretGenericArgs),
    /// Create a TLS secret.
    Tls(CreateSecretTlsArgs),
    /// Create a secret for use with a Docker registry.
    DockerRegistry(CreateSecretDockerArgs),
}

/// `kubectl create secret generic NAME`.
#[derive(Debug, Args)]
pub struct CreateSecretGenericArgs {
    /// The secret name.
    pub name: String,
    /// A key and literal value (`key=value`).
    #[arg(long = "from-literal")]
    pub from_literal: Vec<String>,
    /// A file or directory (optionally `key=path`).
    #[arg(long = "from-file")]
    pub from_file: Vec<String>,
    /// A file of `KEY=VALUE` lines.
    #[arg(long = "from-env-file")]
    pub from_env_file: Vec<String>,
    /// The type of secret to create.
    #[arg(long = "type")]
    pub secret_type: Option<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl create secret tls NAME --cert=F --key=F`.
#[derive(Debug, Args)]
pub struct CreateSecretTlsArgs {
    /// The secret name.
    pub name: String,
    /// Path to PEM encoded public key certificate.
    #[arg(long)]
    pub cert: Option<String>,
    /// Path to private key associated with given certificate.
    #[arg(long)]
    pub key: Option<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl create secret docker-registry NAME`.
#[derive(Debug, Args)]
pub struct CreateSecretDockerArgs {
    /// The secret name.
    pub name: String,
    /// Server location for Docker registry.
    #[arg(long, default_value = "https://index.docker.io/v1/")]
    pub docker_server: String,
    /// Username for Docker registry authentication.
    #[arg(long)]
    pub docker_username: Option<String>,
    /// Password for Docker registry authentication.
    #[arg(long)]
    pub docker_password: Option<String>,
    /// Email for Docker registry.
    #[arg(long)]
    pub docker_email: Option<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl create job NAME --image=I [-- CMD]` or `--from=cronjob/NAME`.
#[derive(Debug, Args)]
pub struct CreateJobArgs {
    /// The job name.
    pub name: String,
    /// Image name to run.
    #[arg(long)]
    pub image: Option<String>,
    /// The name of the resource to create a Job from (only cronjob is supported).
    #[arg(long)]
    pub from: Option<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// The command (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `kubectl create cronjob NAME --image=I --schedule=S [-- CMD]`.
#[derive(Debug, Args)]
pub struct CreateCronJobArgs {
    /// The cron job name.
    pub name: String,
    /// Image name to run.
    #[arg(long, required = true)]
    pub image: String,
    /// A schedule in the Cron format the job should be run with.
    #[arg(long, required = true)]
    pub schedule: String,
    /// job's restart policy. supported values: OnFailure, Never
    #[arg(long, default_value = "OnFailure")]
    pub restart: String,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// The command (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `kubectl create serviceaccount NAME`.
#[derive(Debug, Args)]
pub struct CreateNamedArgs {
    /// The object name.
    pub name: String,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl create token SERVICE_ACCOUNT_NAME`.
#[derive(Debug, Args)]
pub struct CreateTokenArgs {
    /// The service account name.
    pub name: String,
    /// Audience of the requested token (repeatable; default: the API server's audiences).
    #[arg(long = "audience")]
    pub audiences: Vec<String>,
    /// Kind of an object to bind the token to: Pod, Secret or Node.
    #[arg(long = "bound-object-kind")]
    pub bound_object_kind: Option<String>,
    /// Name of an object to bind the token to.
    #[arg(long = "bound-object-name")]
    pub bound_object_name: Option<String>,
    /// UID of an object to bind the token to.
    #[arg(long = "bound-object-uid")]
    pub bound_object_uid: Option<String>,
    /// Requested lifetime of the issued token (`10m`, `1h`; 0 = the server default).
    #[arg(long = "duration", default_value = "0s")]
    pub duration: String,
    /// Output format: json|yaml|name (default: the token alone).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// `kubectl create role|clusterrole NAME --verb=V --resource=R`.
#[derive(Debug, Args)]
pub struct CreateRoleArgs {
    /// The role name.
    pub name: String,
    /// Verbs that apply to the resources contained in the rule.
    #[arg(long = "verb", value_delimiter = ',')]
    pub verbs: Vec<String>,
    /// Resources the rule applies to.
    #[arg(long = "resource", value_delimiter = ',')]
    pub resources: Vec<String>,
    /// Resource in the white list that the rule applies to.
    #[arg(long = "resource-name")]
    pub resource_names: Vec<String>,
    /// A partial URL that user should have access to (clusterrole only).
    #[arg(long = "non-resource-url", value_delimiter = ',')]
    pub non_resource_urls: Vec<String>,
    /// An aggregation label selector for combining ClusterRoles (clusterrole only).
    #[arg(long)]
    pub aggregation_rule: Option<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl create rolebinding|clusterrolebinding NAME`.
#[derive(Debug, Args)]
pub struct CreateBindingArgs {
    /// The binding name.
    pub name: String,
    /// Role this RoleBinding should reference.
    #[arg(long)]
    pub role: Option<String>,
    /// ClusterRole this binding should reference.
    #[arg(long)]
    pub clusterrole: Option<String>,
    /// Usernames to bind to the role (the global `--user` flag, moved here by `execute`).
    #[arg(skip)]
    pub users: Vec<String>,
    /// Groups to bind to the role.
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Service accounts to bind to the role, in the format <namespace>:<name>.
    #[arg(long = "serviceaccount")]
    pub serviceaccounts: Vec<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl rollout pause|resume|history|undo TYPE/NAME`.
#[derive(Debug, Args)]
pub struct RolloutTargetArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// See the details, including podTemplate of the revision specified (history), or the revision
    /// to roll back to (undo; 0 = the previous one).
    #[arg(long = "revision", alias = "to-revision", default_value_t = 0)]
    pub revision: i64,
}

/// `kubectl cordon|uncordon NODE`.
#[derive(Debug, Args)]
pub struct CordonArgs {
    /// Node names.
    pub nodes: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// `kubectl taint NODE KEY[=VALUE]:EFFECT...`.
#[derive(Debug, Args)]
pub struct TaintArgs {
    /// `nodes NAME` (or `node/NAME`) followed by taints.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// If true, allow taints to be overwritten.
    #[arg(long)]
    pub overwrite: bool,
    /// Select all nodes in the cluster.
    #[arg(long)]
    pub all: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// `kubectl drain NODE`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Node names.
    pub nodes: Vec<String>,
    /// Continue even if there are pods not managed by a controller.
    #[arg(long)]
    pub force: bool,
    /// Ignore DaemonSet-managed pods.
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Continue even if there are pods using emptyDir (local data that will be deleted).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Period of time in seconds given to each pod to terminate gracefully (-1 = pod's default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// The length of time to wait before giving up, zero means infinite.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Delete pods instead of evicting them.
    #[arg(long)]
    pub disable_eviction: bool,
    /// Label selector to filter pods on the node.
    #[arg(long)]
    pub pod_selector: Option<String>,
    /// Selector (label query) to filter nodes on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// `kubectl events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Filter events to only those pertaining to the specified resource (TYPE/NAME).
    #[arg(long = "for")]
    pub for_object: Option<String>,
    /// Output only events of given types (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// List events across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Output format: json|yaml|name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// `kubectl auth`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The auth action.
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// `kubectl auth can-i|whoami`.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Check whether an action is allowed.
    CanI(CanIArgs),
    /// Experimental: Check self subject attributes.
    Whoami(WhoamiArgs),
}

/// `kubectl auth can-i VERB TYPE[/NAME] | VERB NONRESOURCEURL`.
#[derive(Debug, Args)]
pub struct CanIArgs {
    /// VERB followed by a resource (TYPE, TYPE/NAME, TYPE NAME) or a non-resource URL.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Check the action in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only the exit code says the answer.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// SubResource such as pod/log or deployment/scale.
    #[arg(long)]
    pub subresource: Option<String>,
}

/// `kubectl auth whoami`.
#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// Output format: json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// `kubectl api-versions`.
#[derive(Debug, Args)]
pub struct ApiVersionsArgs {}

/// `kubectl edit TYPE NAME`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Output format of the edited text: yaml (default) or json.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}
