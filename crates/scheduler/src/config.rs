//! The `--config` file: a `KubeSchedulerConfiguration` (`kubescheduler.config.k8s.io/v1`) with
//! profiles (one [`Registry`] per `schedulerName`), plugin enable/disable per extension point
//! (`multiPoint`, `preFilter`, `filter`, `preScore`, `score`; `*` disables every default), score
//! weights, `percentageOfNodesToScore` and `pluginConfig` (NodeResourcesFit's `scoringStrategy`,
//! VolumeBinding's `bindTimeoutSeconds`).
//! Fields we do not use are accepted and ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::framework::{FilterPlugin, Registry, ScorePlugin};
use crate::plugins;
use crate::plugins::node_resources_fit::{
    NodeResourcesFit, ScoringStrategy, ShapePoint, StrategyKind, MAX_CUSTOM_PRIORITY_SCORE,
};
use crate::scheduler::SCHEDULER_NAME;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The YAML error.
        source: serde_yaml_ng::Error,
    },
    /// A plugin name no scheduler knows.
    #[error("plugin {0:?} does not exist")]
    UnknownPlugin(String),
    /// Two profiles with one scheduler name.
    #[error("duplicate profile with scheduler name {0:?}")]
    DuplicateProfile(String),
    /// A plugin's `args` are invalid (upstream's validation message).
    #[error("pluginConfig[{plugin}].args: {message}")]
    InvalidArgs {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        message: String,
    },
}

/// The configuration file's top level.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeSchedulerConfiguration {
    /// Where the apiserver credentials are.
    #[serde(default)]
    pub client_connection: Option<ClientConnection>,
    /// Default for profiles that do not set their own.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Scheduling profiles; none means the default profile.
    #[serde(default)]
    pub profiles: Vec<Profile>,
}

/// `clientConnection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    /// Path to a kubeconfig file.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
}

/// One profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Pods with this `spec.schedulerName` use this profile (default `default-scheduler`).
    #[serde(default)]
    pub scheduler_name: Option<String>,
    /// Overrides the top-level value.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Plugin changes relative to the defaults.
    #[serde(default)]
    pub plugins: Option<Plugins>,
    /// Per-plugin arguments.
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

/// One `pluginConfig` entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PluginConfig {
    /// The plugin.
    pub name: String,
    /// Its arguments (`NodeResourcesFitArgs` for NodeResourcesFit; others are ignored).
    #[serde(default)]
    pub args: serde_json::Value,
}

/// `VolumeBindingArgs` (the parts we use).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeBindingArgs {
    #[serde(default)]
    bind_timeout_seconds: Option<i64>,
}

/// VolumeBinding's PreBind timeout from its `pluginConfig` args (upstream default 600 s).
fn volume_bind_timeout(args: &serde_json::Value) -> Result<Duration, ConfigError> {
    let invalid = |message: String| ConfigError::InvalidArgs {
        plugin: "VolumeBinding".into(),
        message,
    };
    if args.is_null() {
        return Ok(crate::volumes::BIND_TIMEOUT);
    }
    let args: VolumeBindingArgs =
        serde_json::from_value(args.clone()).map_err(|e| invalid(e.to_string()))?;
    match args.bind_timeout_seconds {
        None => Ok(crate::volumes::BIND_TIMEOUT),
        Some(seconds) if seconds < 0 => Err(invalid(format!(
            "bindTimeoutSeconds: Invalid value: {seconds}: invalid BindTimeoutSeconds, should not be a negative value"
        ))),
        Some(seconds) => Ok(Duration::from_secs(seconds.unsigned_abs())),
    }
}

/// `NodeResourcesFitArgs` (the parts we use).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeResourcesFitArgs {
    #[serde(default)]
    scoring_strategy: Option<ScoringStrategyArgs>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScoringStrategyArgs {
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    resources: Option<Vec<ResourceSpec>>,
    #[serde(default)]
    requested_to_capacity_ratio: Option<RequestedToCapacityRatioArgs>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ResourceSpec {
    name: String,
    #[serde(default)]
    weight: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RequestedToCapacityRatioArgs {
    #[serde(default)]
    shape: Vec<ShapeArgs>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct ShapeArgs {
    #[serde(default)]
    utilization: i64,
    #[serde(default)]
    score: i64,
}

/// NodeResourcesFit's scoring strategy from its `pluginConfig` args, defaulted and validated
/// as upstream (weights 1-100, 0 meaning 1; shape utilisation 0-100 strictly increasing,
/// scores 0-10).
fn scoring_strategy(args: &serde_json::Value) -> Result<ScoringStrategy, ConfigError> {
    let invalid = |message: String| ConfigError::InvalidArgs {
        plugin: "NodeResourcesFit".into(),
        message,
    };
    let args: NodeResourcesFitArgs = if args.is_null() {
        NodeResourcesFitArgs::default()
    } else {
        serde_json::from_value(args.clone()).map_err(|e| invalid(e.to_string()))?
    };
    let Some(strategy) = args.scoring_strategy else {
        return Ok(ScoringStrategy::default());
    };
    let mut resources = Vec::new();
    for (i, resource) in strategy
        .resources
        .unwrap_or_else(|| {
            vec![
                ResourceSpec {
                    name: "cpu".into(),
                    weight: 1,
                },
                ResourceSpec {
                    name: "memory".into(),
                    weight: 1,
                },
            ]
        })
        .into_iter()
        .enumerate()
    {
        let weight = if resource.weight == 0 {
            1
        } else {
            resource.weight
        };
        if !(1..=100).contains(&weight) {
            return Err(invalid(format!(
                "scoringStrategy.resources[{i}].weight: Invalid value: {weight}: resource weight of {} should be in range [1, 100]",
                resource.name
            )));
        }
        resources.push((resource.name, weight));
    }
    let kind = match strategy.type_.as_deref().unwrap_or("LeastAllocated") {
        "LeastAllocated" => StrategyKind::LeastAllocated,
        "MostAllocated" => StrategyKind::MostAllocated,
        "RequestedToCapacityRatio" => {
            let shape = strategy
                .requested_to_capacity_ratio
                .map(|r| r.shape)
                .unwrap_or_default();
            if shape.is_empty() {
                return Err(invalid(
                    "scoringStrategy.requestedToCapacityRatio.shape: Required value: at least one point must be specified".into(),
                ));
            }
            let mut points: Vec<ShapePoint> = Vec::new();
            for (i, point) in shape.iter().enumerate() {
                if !(0..=100).contains(&point.utilization) {
                    return Err(invalid(format!("scoringStrategy.requestedToCapacityRatio.shape[{i}].utilization: Invalid value: {}: not in valid range [0, 100]", point.utilization)));
                }
                if !(0..=MAX_CUSTOM_PRIORITY_SCORE).contains(&point.score) {
                    return Err(invalid(format!("scoringStrategy.requestedToCapacityRatio.shape[{i}].score: Invalid value: {}: not in valid range [0, 10]", point.score)));
                }
                if points.last().is_some_and(|p| p.utilization >= point.utilization) {
                    return Err(invalid(format!("scoringStrategy.requestedToCapacityRatio.shape[{i}].utilization: Invalid value: {}: utilization values must be sorted in increasing order", point.utilization)));
                }
                points.push(ShapePoint {
                    utilization: point.utilization,
                    score: point.score,
                });
            }
            StrategyKind::RequestedToCapacityRatio(points)
        }
        other => {
            return Err(invalid(format!(
                "scoringStrategy.type: Unsupported value: {other:?}: supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""
            )))
        }
    };
    Ok(ScoringStrategy { kind, resources })
}

/// Plugin sets per extension point (others are accepted and ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    /// Applies to every extension point a plugin implements.
    #[serde(default)]
    pub multi_point: PluginSet,
    /// PreFilter (treated like `filter`: our filters carry their own PreFilter).
    #[serde(default)]
    pub pre_filter: PluginSet,
    /// Filter.
    #[serde(default)]
    pub filter: PluginSet,
    /// PreScore (treated like `score`).
    #[serde(default)]
    pub pre_score: PluginSet,
    /// Score.
    #[serde(default)]
    pub score: PluginSet,
}

/// Enabled and disabled plugins.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PluginSet {
    /// Added (or re-weighted) after the defaults.
    #[serde(default)]
    pub enabled: Vec<Plugin>,
    /// Removed from the defaults; `*` removes all.
    #[serde(default)]
    pub disabled: Vec<Plugin>,
}

/// A plugin reference.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Plugin {
    /// The plugin's name.
    pub name: String,
    /// Score weight (0 or unset: the default, or 1 for a newly enabled plugin).
    #[serde(default)]
    pub weight: Option<i64>,
}

/// Upstream plugins this scheduler accepts in a configuration but implements elsewhere (queue,
/// binding, preemption) or not yet.
const ACCEPTED_ELSEWHERE: &[&str] = &[
    "PrioritySort",
    "SchedulingGates",
    "DefaultPreemption",
    "DefaultBinder",
    "VolumeZone",
    "NodeVolumeLimits",
    "EBSLimits",
    "GCEPDLimits",
    "AzureDiskLimits",
    "CinderLimits",
    "DynamicResources",
];

fn filter_plugin(name: &str) -> Option<Box<dyn FilterPlugin>> {
    Some(match name {
        "NodeUnschedulable" => Box::new(plugins::node_unschedulable::NodeUnschedulable),
        "NodeName" => Box::new(plugins::node_name::NodeName),
        "TaintToleration" => Box::new(plugins::taint_toleration::TaintToleration),
        "NodeAffinity" => Box::new(plugins::node_affinity::NodeAffinity),
        "NodePorts" => Box::new(plugins::node_ports::NodePorts),
        "NodeResourcesFit" => Box::new(plugins::node_resources_fit::NodeResourcesFit::default()),
        "VolumeRestrictions" => Box::new(plugins::volume_restrictions::VolumeRestrictions),
        "VolumeBinding" => Box::new(plugins::volume_binding::VolumeBinding),
        "PodTopologySpread" => Box::new(plugins::pod_topology_spread::PodTopologySpread::default()),
        "InterPodAffinity" => Box::new(plugins::inter_pod_affinity::InterPodAffinity::default()),
        _ => return None,
    })
}

fn score_plugin(name: &str) -> Option<Box<dyn ScorePlugin>> {
    Some(match name {
        "TaintToleration" => Box::new(plugins::taint_toleration::TaintToleration),
        "NodeAffinity" => Box::new(plugins::node_affinity::NodeAffinity),
        "NodeResourcesFit" => Box::new(plugins::node_resources_fit::NodeResourcesFit::default()),
        "NodeResourcesBalancedAllocation" => {
            Box::new(plugins::balanced_allocation::BalancedAllocation)
        }
        "PodTopologySpread" => Box::new(plugins::pod_topology_spread::PodTopologySpread::default()),
        "InterPodAffinity" => Box::new(plugins::inter_pod_affinity::InterPodAffinity::default()),
        "ImageLocality" => Box::new(plugins::image_locality::ImageLocality),
        _ => return None,
    })
}

fn check_known(set: &PluginSet) -> Result<(), ConfigError> {
    for plugin in set.enabled.iter().chain(&set.disabled) {
        let name = plugin.name.as_str();
        let known = name == "*"
            || filter_plugin(name).is_some()
            || score_plugin(name).is_some()
            || ACCEPTED_ELSEWHERE.contains(&name);
        if !known {
            return Err(ConfigError::UnknownPlugin(plugin.name.clone()));
        }
    }
    Ok(())
}

/// Applies one set to a list of (name, weight), keeping only names `exists` accepts.
fn apply(list: &mut Vec<(String, i64)>, set: &PluginSet, exists: impl Fn(&str) -> bool) {
    if set.disabled.iter().any(|p| p.name == "*") {
        list.clear();
    }
    list.retain(|(name, _)| !set.disabled.iter().any(|p| &p.name == name));
    for plugin in set.enabled.iter().filter(|p| exists(&p.name)) {
        let weight = plugin.weight.filter(|w| *w > 0);
        match list.iter_mut().find(|(name, _)| *name == plugin.name) {
            Some(entry) => entry.1 = weight.unwrap_or(entry.1),
            None => list.push((plugin.name.clone(), weight.unwrap_or(1))),
        }
    }
}

impl KubeSchedulerConfiguration {
    /// Reads a configuration file (YAML or JSON).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// One registry per scheduler name.
    pub fn registries(&self) -> Result<Vec<(String, Registry)>, ConfigError> {
        let profiles = if self.profiles.is_empty() {
            vec![Profile::default()]
        } else {
            self.profiles.clone()
        };
        let mut out: Vec<(String, Registry)> = Vec::new();
        for profile in profiles {
            let name = profile
                .scheduler_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| SCHEDULER_NAME.to_string());
            if out.iter().any(|(n, _)| *n == name) {
                return Err(ConfigError::DuplicateProfile(name));
            }
            let mut fit = NodeResourcesFit::default();
            let mut bind_timeout = crate::volumes::BIND_TIMEOUT;
            for config in &profile.plugin_config {
                if config.name == "NodeResourcesFit" {
                    fit.strategy = scoring_strategy(&config.args)?;
                }
                if config.name == "VolumeBinding" {
                    bind_timeout = volume_bind_timeout(&config.args)?;
                }
            }
            let defaults = Registry::default();
            let mut filters: Vec<(String, i64)> = defaults
                .filters
                .iter()
                .map(|p| p.name())
                .filter(|n| filter_plugin(n).is_some())
                .map(|n| (n.to_string(), 0))
                .collect();
            let mut scores: Vec<(String, i64)> = defaults
                .scores
                .iter()
                .map(|(p, w)| (p.name().to_string(), *w))
                .collect();
            if let Some(plugins) = &profile.plugins {
                for set in [
                    &plugins.multi_point,
                    &plugins.pre_filter,
                    &plugins.filter,
                    &plugins.pre_score,
                    &plugins.score,
                ] {
                    check_known(set)?;
                }
                for set in [&plugins.multi_point, &plugins.pre_filter, &plugins.filter] {
                    apply(&mut filters, set, |n| filter_plugin(n).is_some());
                }
                for set in [&plugins.multi_point, &plugins.pre_score, &plugins.score] {
                    apply(&mut scores, set, |n| score_plugin(n).is_some());
                }
            }
            // Readiness is not an upstream plugin (upstream uses the not-ready taint): always on.
            let mut registry_filters: Vec<Box<dyn FilterPlugin>> =
                vec![Box::new(plugins::node_unschedulable::NodeReady)];
            registry_filters.extend(filters.iter().filter_map(|(n, _)| filter_plugin(n)));
            let registry = Registry {
                filters: registry_filters,
                scores: scores
                    .iter()
                    .filter_map(|(n, w)| {
                        if n == "NodeResourcesFit" {
                            let plugin: Box<dyn ScorePlugin> = Box::new(fit.clone());
                            return Some((plugin, *w));
                        }
                        Some((score_plugin(n)?, *w))
                    })
                    .collect(),
                percentage_of_nodes_to_score: profile
                    .percentage_of_nodes_to_score
                    .or(self.percentage_of_nodes_to_score),
                volume_bind_timeout: bind_timeout,
            };
            out.push((name, registry));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> KubeSchedulerConfiguration {
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(registry: &Registry) -> (Vec<&'static str>, Vec<(&'static str, i64)>) {
        (
            registry.filters.iter().map(|p| p.name()).collect(),
            registry
                .scores
                .iter()
                .map(|(p, w)| (p.name(), *w))
                .collect(),
        )
    }

    #[test]
    fn profiles_enable_disable_and_reweight_plugins() {
        let config = parse(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
clientConnection:
  kubeconfig: /etc/kubernetes/scheduler.conf
profiles:
- schedulerName: default-scheduler
- schedulerName: no-scoring
  percentageOfNodesToScore: 100
  plugins:
    score:
      disabled:
      - name: '*'
      enabled:
      - name: ImageLocality
        weight: 7
    multiPoint:
      disabled:
      - name: InterPodAffinity
    preFilter:
      enabled:
      - name: SchedulingGates
"#,
        );
        let registries = config.registries().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(registries.len(), 2);
        let (name, default) = &registries[0];
        assert_eq!(name, "default-scheduler");
        assert_eq!(default.percentage_of_nodes_to_score, Some(30));
        assert_eq!(names(default).1.len(), Registry::default().scores.len());
        let (name, custom) = &registries[1];
        assert_eq!(name, "no-scoring");
        assert_eq!(custom.percentage_of_nodes_to_score, Some(100));
        let (filters, scores) = names(custom);
        assert!(!filters.contains(&"InterPodAffinity"));
        assert!(filters.contains(&"PodTopologySpread"));
        assert_eq!(scores, vec![("ImageLocality", 7)]);
    }

    #[test]
    fn unknown_plugins_and_duplicate_profiles_are_rejected() {
        let unknown =
            parse("profiles:\n- plugins:\n    filter:\n      enabled:\n      - name: Bogus\n");
        assert!(matches!(unknown.registries(), Err(ConfigError::UnknownPlugin(n)) if n == "Bogus"));
        let duplicate = parse("profiles:\n- schedulerName: a\n- schedulerName: a\n");
        assert!(matches!(
            duplicate.registries(),
            Err(ConfigError::DuplicateProfile(_))
        ));
        assert_eq!(
            KubeSchedulerConfiguration::default()
                .registries()
                .map(|r| r.len())
                .ok(),
            Some(1)
        );
    }

    #[test]
    fn node_resources_fit_takes_its_scoring_strategy_from_plugin_config() {
        use crate::framework::test_util::{node, pod};
        use crate::framework::CycleState;
        let config = parse(
            r#"
profiles:
- schedulerName: bin-packing
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 3
        - name: memory
- schedulerName: ratio
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: RequestedToCapacityRatio
        requestedToCapacityRatio:
          shape:
          - utilization: 0
            score: 10
          - utilization: 100
            score: 0
"#,
        );
        let registries = config.registries().unwrap_or_else(|e| panic!("{e}"));
        let fit_score = |registry: &Registry, candidate, on| {
            registry
                .scores
                .iter()
                .find(|(p, _)| p.name() == "NodeResourcesFit")
                .map(|(p, _)| p.score(&CycleState::default(), candidate, on))
        };
        let node_info = node("n", "4", "10000", "110");
        let candidate = pod("p", Some("3"), Some("5000"));
        // MostAllocated, cpu weight 3 (75) and memory weight 1 (50).
        assert_eq!(
            fit_score(&registries[0].1, &candidate, &node_info),
            Some((75 * 3 + 50) / 4)
        );
        // The reversed shape scores free capacity: cpu 25, memory 50.
        assert_eq!(
            fit_score(&registries[1].1, &candidate, &node_info),
            Some(38)
        );
    }

    #[test]
    fn volume_binding_takes_its_bind_timeout_from_plugin_config() {
        let config = parse(
            "profiles:\n- pluginConfig:\n  - name: VolumeBinding\n    args: {bindTimeoutSeconds: 30}\n- schedulerName: other\n",
        );
        let registries = config.registries().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(registries[0].1.volume_bind_timeout, Duration::from_secs(30));
        assert_eq!(
            registries[1].1.volume_bind_timeout,
            Duration::from_secs(600)
        );
        let filters = names(&registries[1].1).0;
        assert!(filters.contains(&"VolumeBinding") && filters.contains(&"VolumeRestrictions"));
        let negative = parse(
            "profiles:\n- pluginConfig:\n  - name: VolumeBinding\n    args: {bindTimeoutSeconds: -1}\n",
        );
        assert!(matches!(
            negative.registries(),
            Err(ConfigError::InvalidArgs { plugin, .. }) if plugin == "VolumeBinding"
        ));
        let disabled = parse(
            "profiles:\n- plugins:\n    multiPoint:\n      disabled:\n      - name: VolumeBinding\n",
        );
        let registries = disabled.registries().unwrap_or_else(|e| panic!("{e}"));
        assert!(!names(&registries[0].1).0.contains(&"VolumeBinding"));
    }

    #[test]
    fn invalid_scoring_strategies_are_rejected() {
        for args in [
            "{scoringStrategy: {type: Bogus}}",
            "{scoringStrategy: {type: LeastAllocated, resources: [{name: cpu, weight: 101}]}}",
            "{scoringStrategy: {type: RequestedToCapacityRatio}}",
            "{scoringStrategy: {type: RequestedToCapacityRatio, requestedToCapacityRatio: {shape: [{utilization: 50, score: 1}, {utilization: 40, score: 2}]}}}",
            "{scoringStrategy: {type: RequestedToCapacityRatio, requestedToCapacityRatio: {shape: [{utilization: 50, score: 11}]}}}",
        ] {
            let config = parse(&format!(
                "profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args: {args}\n"
            ));
            assert!(
                matches!(config.registries(), Err(ConfigError::InvalidArgs { .. })),
                "{args}"
            );
        }
    }
}
