//! Arguments of `autoscale`, `replace`, `set env`, `set resources`, `top` and `completion`.

use clap::{ArgAction, Args, Subcommand};

/// `kubectl autoscale (-f FILENAME | TYPE NAME | TYPE/NAME) [--min=MINPODS] --max=MAXPODS`.
#[derive(Debug, Args)]
#[command(
    override_usage = "kubectl autoscale (-f FILENAME | TYPE NAME | TYPE/NAME) [--min=MINPODS] --max=MAXPODS [--cpu-percent=CPU] [options]",
    long_about = "Creates an autoscaler that automatically chooses and sets the number of pods that run in a Kubernetes cluster.\n\nLooks up a deployment, replica set, stateful set, or replication controller by name and creates an autoscaler that uses the given resource as a reference. An autoscaler can automatically increase or decrease number of pods deployed within the system as needed.",
    after_help = "Examples:\n  # Auto scale a deployment \"foo\", with the number of pods between 2 and 10, no target CPU utilization specified so a default autoscaling policy will be used\n  kubectl autoscale deployment foo --min=2 --max=10\n\n  # Auto scale a replication controller \"foo\", with the number of pods between 1 and 5, target CPU utilization at 80%\n  kubectl autoscale rc foo --max=5 --cpu-percent=80"
)]
pub struct AutoscaleArgs {
    /// TYPE NAME or TYPE/NAME of the workload to autoscale.
    pub args: Vec<String>,
    /// Filename, directory, or URL to files identifying the resource to autoscale.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// The lower limit for the number of pods that can be set by the autoscaler. If it's not
    /// specified or negative, the server will apply a default value.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub min: i32,
    /// The upper limit for the number of pods that can be set by the autoscaler. Required.
    #[arg(long, allow_negative_numbers = true)]
    pub max: Option<i32>,
    /// The target average CPU utilization (represented as a percent of requested CPU) over all
    /// the pods. If it's not specified or negative, a default autoscaling policy will be used.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub cpu_percent: i32,
    /// The name for the newly created object. If not specified, the name of the input resource
    /// will be used.
    #[arg(long)]
    pub name: Option<String>,
    /// Output format. One of: (json, yaml, name, jsonpath).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-autoscale")]
    pub field_manager: String,
    /// If true, the configuration of current object will be saved in its annotation.
    #[arg(long)]
    pub save_config: bool,
}

/// `kubectl replace -f FILENAME`.
#[derive(Debug, Args)]
#[command(
    override_usage = "kubectl replace -f FILENAME [options]",
    long_about = "Replace a resource by file name or stdin.\n\nJSON and YAML formats are accepted. If replacing an existing resource, the complete resource spec must be provided. This can be obtained by\n\n  $ kubectl get TYPE NAME -o yaml",
    after_help = "Examples:\n  # Replace a pod using the data in pod.json\n  kubectl replace -f ./pod.json\n\n  # Replace a pod based on the JSON passed into stdin\n  cat pod.json | kubectl replace -f -\n\n  # Force replace, delete and then re-create the resource\n  kubectl replace --force -f ./pod.json"
)]
pub struct ReplaceArgs {
    /// The files that contain the configurations to replace ("-" for stdin).
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// If true, immediately remove resources from API and bypass graceful deletion. Note that
    /// immediate deletion of some resources may result in inconsistency or data loss.
    #[arg(long)]
    pub force: bool,
    /// Period of time in seconds given to the resource to terminate gracefully. Ignored if
    /// negative. Can only be set to 0 when --force is true (force deletion).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Must be "background", "orphan", or "foreground".
    #[arg(long, default_value = "background", num_args = 0..=1, default_missing_value = "background")]
    pub cascade: String,
    /// If true, wait for resources to be gone before returning. This waits for finalizers.
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// The length of time to wait before giving up on a delete, zero means determine a timeout
    /// from the size of the object.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Output format. One of: (json, yaml, name, jsonpath).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-replace")]
    pub field_manager: String,
    /// Must be one of: strict (or true), warn, ignore (or false).
    #[arg(long, num_args = 0..=1, default_missing_value = "strict", value_name = "MODE")]
    pub validate: Option<String>,
    /// If true, the configuration of current object will be saved in its annotation.
    #[arg(long)]
    pub save_config: bool,
}

/// `kubectl set env RESOURCE/NAME KEY_1=VAL_1 ... KEY_N=VAL_N`.
#[derive(Debug, Args)]
#[command(
    override_usage = "kubectl set env RESOURCE/NAME KEY_1=VAL_1 ... KEY_N=VAL_N [options]",
    long_about = "Update environment variables on a pod template.\n\nList environment variable definitions in one or more pods, pod templates. Add, update, or remove container environment variable definitions in one or more pod templates (within replication controllers or deployment configurations). View or modify the environment variable definitions on all containers in the specified pods or pod templates, or just those that match a wildcard.\n\nIf \"--env -\" is passed, environment variables can be read from STDIN using the standard env syntax.\n\nPossible resources include (case insensitive):\n\n  pod (po), replicationcontroller (rc), deployment (deploy), daemonset (ds), statefulset (sts), cronjob (cj), replicaset (rs)",
    after_help = "Examples:\n  # Update deployment 'registry' with a new environment variable\n  kubectl set env deployment/registry STORAGE_DIR=/local\n\n  # List the environment variables defined on a deployments 'sample-build'\n  kubectl set env deployment/sample-build --list\n\n  # Import environment from a secret\n  kubectl set env --from=secret/mysecret deployment/myapp\n\n  # Import environment from a config map with a prefix\n  kubectl set env --from=configmap/myconfigmap --prefix=MYSQL_ deployment/myapp\n\n  # Remove the environment variable ENV from container 'c1' in all deployments\n  kubectl set env deployments --all --containers=\"c1\" ENV-"
)]
pub struct SetEnvArgs {
    /// Resources (TYPE NAME or TYPE/NAME) followed by KEY=VALUE and KEY- arguments.
    pub args: Vec<String>,
    /// Filename, directory, or URL to files the resource to update the env.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// The names of containers in the selected pod templates to change - may use wildcards.
    #[arg(short = 'c', long = "containers", default_value = "*")]
    pub containers: String,
    /// The name of a resource from which to inject environment variables.
    #[arg(long)]
    pub from: Option<String>,
    /// Prefix to append to variable names.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Specify a key-value pair for an environment variable to set into each container.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Comma-separated list of keys to import from specified resource.
    #[arg(long, value_delimiter = ',')]
    pub keys: Vec<String>,
    /// If true, display the environment and any changes in the standard format.
    #[arg(long)]
    pub list: bool,
    /// If true, show secret or configmap references when listing variables.
    #[arg(long)]
    pub resolve: bool,
    /// If true, select all resources in the namespace of the specified resource types.
    #[arg(long)]
    pub all: bool,
    /// If true, allow environment to be overwritten, otherwise reject updates that overwrite
    /// existing environment.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub overwrite: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format. One of: (json, yaml, name, jsonpath).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-set")]
    pub field_manager: String,
}

/// `kubectl set resources (-f FILENAME | TYPE NAME) [--limits=...] [--requests=...]`.
#[derive(Debug, Args)]
#[command(
    override_usage = "kubectl set resources (-f FILENAME | TYPE NAME) ([--limits=LIMITS & --requests=REQUESTS] [options]",
    long_about = "Specify compute resource requirements (CPU, memory) for any resource that defines a pod template. If a pod is successfully scheduled, it is guaranteed the amount of resource requested, but may burst up to its specified limits.\n\nFor each compute resource, if a limit is specified and a request is omitted, the request will default to the limit.\n\nPossible resources include (case insensitive): Use \"kubectl api-resources\" for a complete list of supported resources..",
    after_help = "Examples:\n  # Set a deployments nginx container cpu limits to \"200m\" and memory to \"512Mi\"\n  kubectl set resources deployment nginx -c=nginx --limits=cpu=200m,memory=512Mi\n\n  # Set the resource request and limits for all containers in nginx\n  kubectl set resources deployment nginx --limits=cpu=200m,memory=512Mi --requests=cpu=100m,memory=256Mi\n\n  # Remove the resource requests for resources on containers in nginx\n  kubectl set resources deployment nginx --limits=cpu=0,memory=0 --requests=cpu=0,memory=0"
)]
pub struct SetResourcesArgs {
    /// TYPE NAME or TYPE/NAME of the objects to update.
    pub args: Vec<String>,
    /// Filename, directory, or URL to files identifying the resource to get from a server.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// The names of containers in the selected pod templates to change, all containers are
    /// selected by default - may use wildcards.
    #[arg(short = 'c', long = "containers", default_value = "*")]
    pub containers: String,
    /// The resource requirement limits for this container. For example,
    /// 'cpu=100m,memory=256Mi'.
    #[arg(long, default_value = "")]
    pub limits: String,
    /// The resource requirement requests for this container. For example,
    /// 'cpu=100m,memory=256Mi'.
    #[arg(long, default_value = "")]
    pub requests: String,
    /// Select all resources, in the namespace of the specified resource types.
    #[arg(long)]
    pub all: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format. One of: (json, yaml, name, jsonpath).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-set")]
    pub field_manager: String,
}

/// `kubectl top`.
#[derive(Debug, Args)]
#[command(
    long_about = "Display resource (CPU/memory) usage.\n\nThe top command allows you to see the resource consumption for nodes or pods.\n\nThis command requires Metrics Server to be correctly configured and working on the server."
)]
pub struct TopArgs {
    /// Nodes or pods.
    #[command(subcommand)]
    pub command: TopCommand,
}

/// `kubectl top node|pod`.
#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Display resource (CPU/memory) usage of nodes.
    #[command(visible_aliases = ["nodes", "no"])]
    Node(TopNodeArgs),
    /// Display resource (CPU/memory) usage of pods.
    #[command(visible_aliases = ["pods", "po"])]
    Pod(TopPodArgs),
}

/// `kubectl top node [NAME | -l label]`.
#[derive(Debug, Args)]
#[command(
    override_usage = "kubectl top node [NAME | -l label] [options]",
    long_about = "Display resource (CPU/memory) usage of nodes.\n\nThe top-node command allows you to see the resource consumption of nodes.",
    after_help = "Examples:\n  # Show metrics for all nodes\n  kubectl top node\n\n  # Show metrics for a given node\n  kubectl top node NODE_NAME"
)]
pub struct TopNodeArgs {
    /// Only this node.
    pub name: Option<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// If present, print output without headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Print node resources based on Capacity instead of Allocatable(default) of the nodes.
    #[arg(long)]
    pub show_capacity: bool,
    /// If non-empty, sort nodes list using specified field. The field can be either 'cpu' or
    /// 'memory'.
    #[arg(long)]
    pub sort_by: Option<String>,
    /// Enables using protocol-buffers to access Metrics API.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_protocol_buffers: bool,
}

/// `kubectl top pod [NAME | -l label]`.
#[derive(Debug, Args)]
#[command(
    override_usage = "kubectl top pod [NAME | -l label] [options]",
    long_about = "Display resource (CPU/memory) usage of pods.\n\nThe 'top pod' command allows you to see the resource consumption of pods.\n\nDue to the metrics pipeline delay, they may be unavailable for a few minutes since pod creation.",
    after_help = "Examples:\n  # Show metrics for all pods in the default namespace\n  kubectl top pod\n\n  # Show metrics for all pods in the given namespace\n  kubectl top pod --namespace=NAMESPACE\n\n  # Show metrics for a given pod and its containers\n  kubectl top pod POD_NAME --containers\n\n  # Show metrics for the pods defined by label name=myLabel\n  kubectl top pod -l name=myLabel"
)]
pub struct TopPodArgs {
    /// Only this pod.
    pub name: Option<String>,
    /// If present, list the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// If present, print usage of containers within a pod.
    #[arg(long)]
    pub containers: bool,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// If present, print output without headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// If non-empty, sort pods list using specified field. The field can be either 'cpu' or
    /// 'memory'.
    #[arg(long)]
    pub sort_by: Option<String>,
    /// Print the sum of the resource usage.
    #[arg(long)]
    pub sum: bool,
    /// Enables using protocol-buffers to access Metrics API.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_protocol_buffers: bool,
}

/// `kubectl completion SHELL`.
#[derive(Debug, Args)]
#[command(
    override_usage = "kubectl completion SHELL [options]",
    long_about = "Output shell completion code for the specified shell (bash or zsh). The shell code must be evaluated to provide interactive completion of kubectl commands. This can be done by sourcing it from the .bash_profile.\n\nNote for zsh users: zsh completions are only supported in versions of zsh >= 5.2.",
    after_help = "Examples:\n  # Load the kubectl completion code for bash into the current shell\n  source <(kubectl completion bash)\n\n  # Write bash completion code to a file and source it from .bash_profile\n  kubectl completion bash > ~/.kube/completion.bash.inc\n  printf \"\n  # kubectl shell completion\n  source '$HOME/.kube/completion.bash.inc'\n  \" >> $HOME/.bash_profile\n  source $HOME/.bash_profile\n\n  # Load the kubectl completion code for zsh into the current shell\n  source <(kubectl completion zsh)\n  # Set the kubectl completion code for zsh to autoload on startup\n  kubectl completion zsh > \"${fpath[1]}/_kubectl\""
)]
pub struct CompletionArgs {
    /// The shell: bash or zsh.
    pub shell: Vec<String>,
}

#[cfg(test)]
mod tests {
    use crate::cli::Options;
    use clap::Parser;

    /// The `--help` text clap renders for a command line.
    fn help(argv: &[&str]) -> String {
        match Options::try_parse_from(argv) {
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.render().to_string(),
            other => format!("not help: {other:?}"),
        }
    }

    #[test]
    fn every_new_command_has_help_with_usage_and_examples() {
        let cases: [(&[&str], &str); 7] = [
            (&["kubectl", "autoscale", "--help"], "Usage: kubectl autoscale (-f FILENAME | TYPE NAME | TYPE/NAME) [--min=MINPODS] --max=MAXPODS"),
            (&["kubectl", "replace", "--help"], "Usage: kubectl replace -f FILENAME"),
            (&["kubectl", "set", "env", "--help"], "Usage: kubectl set env RESOURCE/NAME KEY_1=VAL_1 ... KEY_N=VAL_N"),
            (&["kubectl", "set", "resources", "--help"], "Usage: kubectl set resources (-f FILENAME | TYPE NAME)"),
            (&["kubectl", "top", "node", "--help"], "Usage: kubectl top node [NAME | -l label]"),
            (&["kubectl", "top", "pod", "--help"], "Usage: kubectl top pod [NAME | -l label]"),
            (&["kubectl", "completion", "--help"], "Usage: kubectl completion SHELL"),
        ];
        for (argv, usage) in cases {
            let text = help(argv);
            assert!(text.contains(usage), "{argv:?}: {text}");
            assert!(text.contains("Examples:\n  # "), "{argv:?}: {text}");
        }
        let top = help(&["kubectl", "top", "--help"]);
        assert!(top.contains("node") && top.contains("pod"), "{top}");
    }
}
