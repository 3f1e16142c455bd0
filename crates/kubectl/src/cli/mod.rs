//! Command-line surface: global flags and one clap subcommand per kubectl verb, with upstream flag
//! names. Parsing only; each command's behaviour lives in `crate::cmd`.

mod extra;
mod more;
mod pod_tools;
mod usage;

pub use extra::*;
pub use more::*;
pub use pod_tools::*;

pub use usage::upstream_usage_error;

use clap::{ArgAction, Args, Parser, Subcommand};

/// `kubectl` options: the global flags plus the command to run.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl",
    about = "kubectl controls the Kubernetes cluster manager."
)]
pub struct Options {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: GlobalFlags,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts (`kubectl options`).
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalFlags {
    /// Path to the kubeconfig file to use for CLI requests.
    #[arg(long, global = true)]
    pub kubeconfig: Option<String>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// If present, the namespace scope for this CLI request.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The length of time to wait before giving up on a single server request ("0" = no timeout).
    #[arg(long, global = true, default_value = "0")]
    pub request_timeout: String,
    /// Number for the log level verbosity.
    #[arg(short = 'v', long = "v", global = true)]
    pub verbosity: Option<u32>,
    /// Username to impersonate for the operation. User could be a regular user or a service
    /// account in a namespace.
    #[arg(long = "as", global = true)]
    pub as_user: Option<String>,
    /// Group to impersonate for the operation, this flag can be repeated to specify multiple
    /// groups.
    #[arg(long = "as-group", global = true)]
    pub as_group: Vec<String>,
    /// UID to impersonate for the operation.
    #[arg(long = "as-uid", global = true)]
    pub as_uid: Option<String>,
    /// The address and port of the Kubernetes API server.
    #[arg(short = 's', long, global = true)]
    pub server: Option<String>,
    /// The name of the kubeconfig cluster to use.
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    /// The name of the kubeconfig user to use (repeatable where a command takes users, such as
    /// `create rolebinding --user`; the last one names the kubeconfig user).
    #[arg(long, global = true)]
    pub user: Vec<String>,
    /// Bearer token for authentication to the API server.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Path to a cert file for the certificate authority.
    #[arg(long, global = true)]
    pub certificate_authority: Option<String>,
    /// Path to a client certificate file for TLS.
    #[arg(long, global = true)]
    pub client_certificate: Option<String>,
    /// Path to a client key file for TLS.
    #[arg(long, global = true)]
    pub client_key: Option<String>,
    /// If true, the server's certificate will not be checked for validity.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub insecure_skip_tls_verify: Option<bool>,
    /// Server name to use for server certificate validation.
    #[arg(long, global = true)]
    pub tls_server_name: Option<String>,
    /// Username for basic authentication to the API server.
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// Password for basic authentication to the API server.
    #[arg(long, global = true)]
    pub password: Option<String>,
}

/// The kubectl verbs we implement.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Display one or many resources.
    Get(GetArgs),
    /// Create a resource from a file or from stdin, or a named generator.
    Create(CreateArgs),
    /// Apply a configuration to a resource by file name or stdin.
    Apply(ApplyArgs),
    /// Delete resources by file names, stdin, resources and names, or by resources and label selector.
    Delete(DeleteArgs),
    /// Print the logs for a container in a pod.
    Logs(LogsArgs),
    /// Execute a command in a container.
    Exec(ExecArgs),
    /// Set a new size for a deployment, replica set, or stateful set.
    Scale(ScaleArgs),
    /// Manage the rollout of a resource.
    Rollout(RolloutArgs),
    /// Take a replication controller, service, deployment or pod and expose it as a new Kubernetes service.
    Expose(ExposeArgs),
    /// Run a particular image on the cluster.
    Run(RunArgs),
    /// Set specific features on objects.
    Set(SetArgs),
    /// Print the client and server version information.
    Version(VersionArgs),
    /// Display cluster information.
    ClusterInfo(ClusterInfoArgs),
    /// Print the supported API resources on the server.
    ApiResources(ApiResourcesArgs),
    /// Show details of a specific resource or group of resources.
    Describe(DescribeArgs),
    /// Wait for a specific condition on one or many resources.
    Wait(WaitArgs),
    /// Update the labels on a resource.
    Label(MetaArgs),
    /// Update the annotations on a resource.
    Annotate(MetaArgs),
    /// Update fields of a resource.
    Patch(PatchArgs),
    /// Modify kubeconfig files.
    Config(ConfigArgs),
    /// Mark node as unschedulable.
    Cordon(CordonArgs),
    /// Mark node as schedulable.
    Uncordon(CordonArgs),
    /// Update the taints on one or more nodes.
    Taint(TaintArgs),
    /// Drain node in preparation for maintenance.
    Drain(DrainArgs),
    /// List events.
    Events(EventsArgs),
    /// Inspect authorization.
    Auth(AuthArgs),
    /// Print the supported API versions on the server, in the form of "group/version".
    ApiVersions(ApiVersionsArgs),
    /// Edit a resource on the server.
    Edit(EditArgs),
    /// Forward one or more local ports to a pod.
    PortForward(PortForwardArgs),
    /// Attach to a running container.
    Attach(AttachArgs),
    /// Copy files and directories to and from containers.
    Cp(CpArgs),
    /// Diff the live version against a would-be applied version.
    Diff(DiffArgs),
    /// Auto-scale a deployment, replica set, stateful set, or replication controller.
    Autoscale(AutoscaleArgs),
    /// Replace a resource by file name or stdin.
    Replace(ReplaceArgs),
    /// Display resource (CPU/memory) usage.
    Top(TopArgs),
    /// Output shell completion code for the specified shell (bash or zsh).
    Completion(CompletionArgs),
}

/// `kubectl get`.
#[derive(Debug, Default, Args)]
pub struct GetArgs {
    /// TYPE[.VERSION][.GROUP] [NAME...] or TYPE/NAME...
    pub args: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Output format: json|yaml|name|wide|jsonpath=...|custom-columns=...
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// After listing/getting the requested object, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch for changes to the requested object(s), without listing/getting first.
    #[arg(long)]
    pub watch_only: bool,
    /// When printing, show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Labels to present as columns (comma separated or repeated).
    #[arg(short = 'L', long = "label-columns", value_delimiter = ',')]
    pub label_columns: Vec<String>,
    /// When using the default or custom-column output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// List the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Files identifying the resources to get.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// If the requested object does not exist the command will return exit code 0.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Sort list types using this JSONPath expression, e.g. `.metadata.creationTimestamp`.
    #[arg(long)]
    pub sort_by: Option<String>,
}

/// `kubectl create`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CreateArgs {
    /// Files that contain the configuration to create ("-" for stdin).
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// Schema validation mode (accepted for compatibility; the server validates).
    #[arg(long, num_args = 0..=1, default_missing_value = "strict", value_name = "MODE")]
    pub validate: Option<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// A named generator.
    #[command(subcommand)]
    pub generator: Option<CreateCommand>,
}

/// `kubectl create <generator>`.
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Create a deployment with the specified name.
    #[command(alias = "deploy")]
    Deployment(CreateDeploymentArgs),
    /// Create a namespace with the specified name.
    #[command(alias = "ns")]
    Namespace(CreateNamespaceArgs),
    /// Create a service using a specified subcommand.
    #[command(alias = "svc")]
    Service(CreateServiceArgs),
    /// Create a config map from a local file, directory or literal value.
    #[command(alias = "cm")]
    Configmap(CreateConfigMapArgs),
    /// Create a secret using a specified subcommand.
    Secret(CreateSecretArgs),
    /// Create a job with the specified name.
    Job(CreateJobArgs),
    /// Create a cron job with the specified name.
    #[command(alias = "cj")]
    Cronjob(CreateCronJobArgs),
    /// Create a service account with the specified name.
    #[command(alias = "sa")]
    Serviceaccount(CreateNamedArgs),
    /// Create a role with single rule.
    Role(CreateRoleArgs),
    /// Create a cluster role.
    Clusterrole(CreateRoleArgs),
    /// Create a role binding for a particular role or cluster role.
    Rolebinding(CreateBindingArgs),
    /// Create a cluster role binding for a particular cluster role.
    Clusterrolebinding(CreateBindingArgs),
    /// Request a service account token.
    Token(CreateTokenArgs),
}

/// `kubectl create deployment NAME --image=I`.
#[derive(Debug, Args)]
pub struct CreateDeploymentArgs {
    /// The deployment name.
    pub name: String,
    /// Image names to run.
    #[arg(long = "image", required = true)]
    pub images: Vec<String>,
    /// Number of replicas to create.
    #[arg(short = 'r', long, default_value_t = 1)]
    pub replicas: i32,
    /// The containerPort that this deployment exposes.
    #[arg(long)]
    pub port: Option<i32>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// The command run in the container (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `kubectl create namespace NAME`.
#[derive(Debug, Args)]
pub struct CreateNamespaceArgs {
    /// The namespace name.
    pub name: String,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl create service clusterip|nodeport|loadbalancer|externalname NAME`.
#[derive(Debug, Args)]
pub struct CreateServiceArgs {
    /// The service type.
    #[command(subcommand)]
    pub command: CreateServiceCommand,
}

/// The service types `kubectl create service` builds.
#[derive(Debug, Subcommand)]
pub enum CreateServiceCommand {
    /// Create a ClusterIP service.
    Clusterip(CreateServiceTypeArgs),
    /// Create a NodePort service.
    Nodeport(CreateServiceTypeArgs),
    /// Create a LoadBalancer service.
    Loadbalancer(CreateServiceTypeArgs),
    /// Create an ExternalName service.
    Externalname(CreateServiceTypeArgs),
}

/// Flags of `kubectl create service TYPE NAME`.
#[derive(Debug, Args)]
pub struct CreateServiceTypeArgs {
    /// The service name.
    pub name: String,
    /// Port pairs can be specified as '<port>:<targetPort>'.
    #[arg(long, value_delimiter = ',')]
    pub tcp: Vec<String>,
    /// Assign your own ClusterIP or set to 'None' for a 'headless' service (clusterip only).
    #[arg(long)]
    pub clusterip: Option<String>,
    /// Port used to expose the service on each node in a cluster (nodeport only).
    #[arg(long)]
    pub node_port: Option<i32>,
    /// External name of service (externalname only).
    #[arg(long)]
    pub external_name: Option<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Files that contain the configuration to apply ("-" for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<String>,
    /// Apply on the server (server-side apply) instead of computing a patch.
    #[arg(long)]
    pub server_side: bool,
    /// With --server-side: take over fields other managers own.
    #[arg(long)]
    pub force_conflicts: bool,
    /// The field manager (default kubectl-client-side-apply, or kubectl with --server-side).
    #[arg(long)]
    pub field_manager: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// Schema validation mode (accepted for compatibility; the server validates).
    #[arg(long, num_args = 0..=1, default_missing_value = "strict", value_name = "MODE")]
    pub validate: Option<String>,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// `kubectl delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// TYPE NAME... or TYPE/NAME...
    pub args: Vec<String>,
    /// Files containing the resources to delete.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete all resources of the given types in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Delete across all namespaces (with a selector or --all).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Period of time in seconds given to the resource to terminate gracefully (-1 = default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Immediately remove resources from the API and bypass graceful deletion.
    #[arg(long)]
    pub force: bool,
    /// If true, resources are signaled for immediate shutdown (same as --grace-period=1).
    #[arg(long)]
    pub now: bool,
    /// "background", "foreground", or "orphan".
    #[arg(long, default_value = "background", num_args = 0..=1, default_missing_value = "background")]
    pub cascade: String,
    /// If true, wait for resources to be gone before returning.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// Treat "resource not found" as a successful delete.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// The length of time to wait before giving up on a delete (0 = forever).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
}

/// `kubectl logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// POD or TYPE/NAME, optionally followed by a container name.
    #[arg(required = true, num_args = 1..=2)]
    pub args: Vec<String>,
    /// Print the logs of this container.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Specify if the logs should be streamed.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Lines of recent log file to display (-1 = all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// Include timestamps on each line in the log output.
    #[arg(long)]
    pub timestamps: bool,
    /// Only return logs newer than a relative duration like 5s, 2m, or 3h.
    #[arg(long)]
    pub since: Option<String>,
    /// Print the logs for the previous instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Maximum bytes of logs to return.
    #[arg(long)]
    pub limit_bytes: Option<i64>,
}

/// `kubectl exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The pod (or TYPE/NAME) to run in.
    pub pod: String,
    /// Container name.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Only print output from the remote session.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The command (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `kubectl scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The new desired number of replicas.
    #[arg(long, required = true)]
    pub replicas: i32,
    /// Precondition for current size.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub current_replicas: i32,
}

/// `kubectl rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// The rollout action.
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// `kubectl rollout <action>`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show the status of the rollout.
    Status(RolloutStatusArgs),
    /// Restart a resource.
    Restart(RolloutStatusArgs),
    /// View rollout history.
    History(RolloutTargetArgs),
    /// Undo a previous rollout.
    Undo(RolloutTargetArgs),
    /// Mark the provided resource as paused.
    Pause(RolloutTargetArgs),
    /// Resume a paused resource.
    Resume(RolloutTargetArgs),
}

/// `kubectl rollout status deployment/NAME`.
#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Watch the status of the rollout until it's done.
    #[arg(short = 'w', long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub watch: bool,
    /// The length of time to wait before ending watch, zero means never.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
}

/// `kubectl expose`.
#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The port that the service should serve on.
    #[arg(long)]
    pub port: Option<i32>,
    /// Name or number for the port on the container that the service should direct traffic to.
    #[arg(long)]
    pub target_port: Option<String>,
    /// The name for the newly created object.
    #[arg(long)]
    pub name: Option<String>,
    /// The network protocol for the service to be created.
    #[arg(long, default_value = "TCP")]
    pub protocol: String,
    /// Type for this service: ClusterIP, NodePort, LoadBalancer, or ExternalName.
    #[arg(long = "type")]
    pub service_type: Option<String>,
    /// A label selector to use for this service.
    #[arg(long)]
    pub selector: Option<String>,
}

/// `kubectl run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pod name.
    pub name: String,
    /// The image for the container to run.
    #[arg(long, required = true)]
    pub image: String,
    /// The restart policy for this Pod: Always, OnFailure, Never.
    #[arg(long, default_value = "Always")]
    pub restart: String,
    /// The port that this container exposes.
    #[arg(long)]
    pub port: Option<i32>,
    /// Comma separated labels to apply to the pod.
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// Environment variables to set in the container.
    #[arg(long)]
    pub env: Vec<String>,
    /// Use the extra arguments as the `command` field instead of `args`.
    #[arg(long)]
    pub command: bool,
    /// Output format: name|json|yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Arguments (or the command with --command), after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// `kubectl set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// What to set.
    #[command(subcommand)]
    pub command: SetCommand,
}

/// `kubectl set <what>`.
#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Update the image of a pod template.
    Image(SetImageArgs),
    /// Update environment variables on a pod template.
    Env(SetEnvArgs),
    /// Update resource requests/limits on objects with pod templates.
    Resources(SetResourcesArgs),
}

/// `kubectl set image deployment/NAME CONTAINER=IMAGE...`.
#[derive(Debug, Args)]
pub struct SetImageArgs {
    /// TYPE/NAME (or TYPE NAME) followed by CONTAINER=IMAGE pairs.
    #[arg(required = true)]
    pub args: Vec<String>,
}

/// `kubectl version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// If true, shows client version only (no server required).
    #[arg(long)]
    pub client: bool,
    /// One of 'yaml' or 'json'.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// `kubectl cluster-info`.
#[derive(Debug, Args)]
pub struct ClusterInfoArgs {}

/// `kubectl api-resources`.
#[derive(Debug, Args)]
pub struct ApiResourcesArgs {
    /// If false, non-namespaced resources will be returned, otherwise only namespaced ones.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub namespaced: Option<bool>,
    /// Limit to resources in the specified API group.
    #[arg(long)]
    pub api_group: Option<String>,
    /// Limit to resources that support the specified verbs.
    #[arg(long, value_delimiter = ',')]
    pub verbs: Vec<String>,
    /// Output format: wide|name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// When using the default or custom-column output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
}

/// `kubectl describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// TYPE [NAME...] or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// List the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// `kubectl wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// TYPE/NAME... or TYPE NAME...
    pub args: Vec<String>,
    /// The condition to wait on: delete|condition=NAME[=VALUE]|jsonpath=...
    #[arg(long = "for", required = true)]
    pub for_condition: String,
    /// The length of time to wait before giving up.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Select all resources in the namespace of the specified resource types.
    #[arg(long)]
    pub all: bool,
}

/// `kubectl label` and `kubectl annotate`.
#[derive(Debug, Args)]
pub struct MetaArgs {
    /// TYPE NAME KEY=VAL... or TYPE/NAME KEY=VAL... (KEY- removes).
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Overwrite existing values.
    #[arg(long)]
    pub overwrite: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Select all resources of the given types in the namespace.
    #[arg(long)]
    pub all: bool,
}

/// `kubectl patch`.
#[derive(Debug, Args)]
pub struct PatchArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The patch to be applied to the resource JSON file.
    #[arg(short = 'p', long)]
    pub patch: String,
    /// The type of patch being provided; one of [json merge strategic].
    #[arg(long = "type", default_value = "strategic")]
    pub patch_type: String,
    /// The subresource to patch (status, scale).
    #[arg(long)]
    pub subresource: Option<String>,
    /// none|client|server.
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
}

/// `kubectl config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The config action.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// `kubectl config <action>`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Display merged kubeconfig settings.
    View(ConfigViewArgs),
    /// Display the current-context.
    CurrentContext,
    /// Describe one or many contexts.
    GetContexts(GetContextsArgs),
    /// Set the current-context in a kubeconfig file.
    UseContext(UseContextArgs),
    /// Set a context entry in kubeconfig.
    SetContext(SetContextArgs),
    /// Set a cluster entry in kubeconfig.
    SetCluster(SetClusterArgs),
    /// Set a user entry in kubeconfig.
    SetCredentials(SetCredentialsArgs),
    /// Delete the specified context from the kubeconfig.
    DeleteContext(NameArg),
    /// Delete the specified cluster from the kubeconfig.
    DeleteCluster(NameArg),
    /// Delete the specified user from the kubeconfig.
    DeleteUser(NameArg),
}

/// `kubectl config get-contexts [NAME]`.
#[derive(Debug, Args)]
pub struct GetContextsArgs {
    /// Only this context.
    pub name: Option<String>,
    /// Output format: name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// When using the default output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
}

/// `kubectl config set-context [NAME | --current]`: `--cluster`, `--user` and `--namespace`
/// are the global flags.
#[derive(Debug, Args)]
pub struct SetContextArgs {
    /// The context name.
    pub name: Option<String>,
    /// Modify the current context.
    #[arg(long)]
    pub current: bool,
}

/// `kubectl config set-cluster NAME`: `--server`, `--certificate-authority`,
/// `--insecure-skip-tls-verify` and `--tls-server-name` are the global flags.
#[derive(Debug, Args)]
pub struct SetClusterArgs {
    /// The cluster name.
    pub name: String,
    /// embed-certs for the cluster entry in kubeconfig.
    #[arg(long)]
    pub embed_certs: bool,
}

/// `kubectl config set-credentials NAME`: `--token`, `--client-certificate`, `--client-key`,
/// `--username` and `--password` are the global flags.
#[derive(Debug, Args)]
pub struct SetCredentialsArgs {
    /// The user name.
    pub name: String,
    /// Embed client cert/key for the user entry in kubeconfig.
    #[arg(long)]
    pub embed_certs: bool,
}

/// A command taking one NAME.
#[derive(Debug, Args)]
pub struct NameArg {
    /// The name.
    pub name: String,
}

/// `kubectl config view`.
#[derive(Debug, Args)]
pub struct ConfigViewArgs {
    /// Remove all information not used by current-context from the output.
    #[arg(long)]
    pub minify: bool,
    /// Display raw byte data and sensitive data.
    #[arg(long)]
    pub raw: bool,
    /// Output format: yaml|json.
    #[arg(short = 'o', long, default_value = "yaml")]
    pub output: String,
}

/// `kubectl config use-context NAME`.
#[derive(Debug, Args)]
pub struct UseContextArgs {
    /// The context name.
    pub name: String,
}
