//! ImageLocality: nodes that already hold the pod's images score higher, scaled by image size
//! and by how many nodes have the image (so one node holding a popular image does not attract
//! every pod), as upstream.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::framework::{CycleState, NodeInfo, PodInfo, ScorePlugin, MAX_NODE_SCORE};

const MB: i64 = 1024 * 1024;
/// Below this sum the score is 0 (upstream `minThreshold`).
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, above this sum the score is 100 (upstream `maxContainerThreshold`).
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

const STATE_KEY: &str = "ImageLocality";

/// Image name (qualified) -> size in bytes.
type ImageSizes = HashMap<String, i64>;

/// Adds `:latest` when the name has neither tag nor digest (upstream `normalizedImageName`).
pub fn normalized_image_name(name: &str) -> String {
    if name.contains('@') || name.rfind(':') > name.rfind('/') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// The fully qualified form: `busybox:1.35` -> `docker.io/library/busybox:1.35`.
pub fn qualified_image_name(name: &str) -> String {
    let name = normalized_image_name(name);
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        name
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// Image name (qualified) -> size in bytes, for every image the node reports (computed once per
/// node update, see [`NodeInfo::images`]).
pub fn node_images(node: &Node) -> HashMap<String, i64> {
    node.status
        .as_ref()
        .and_then(|s| s.images.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|image| {
            let size = image.size_bytes.unwrap_or(0);
            image
                .names
                .iter()
                .flatten()
                .filter(|n| !n.contains('@'))
                .map(move |n| (qualified_image_name(n), size))
        })
        .collect()
}

fn pod_images(pod: &PodInfo) -> Vec<String> {
    pod.pod
        .spec
        .as_ref()
        .map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(&s.containers)
                .filter_map(|c| c.image.as_deref())
                .map(qualified_image_name)
                .collect()
        })
        .unwrap_or_default()
}

/// The score for a sum of (size x spread) over `containers` containers.
pub fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * i64::try_from(containers.max(1)).unwrap_or(1);
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

#[derive(Clone, Default)]
struct ImageSpread {
    /// The pod's images, qualified.
    wanted: Vec<String>,
    /// Image -> number of nodes holding it.
    nodes_with: HashMap<String, usize>,
    total: usize,
}

/// The ImageLocality plugin.
pub struct ImageLocality;

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _feasible: &[&NodeInfo],
        all: &[NodeInfo],
    ) {
        let wanted = pod_images(pod);
        let mut spread = ImageSpread {
            total: all.len(),
            ..ImageSpread::default()
        };
        // Nodes with the same images share one map: count nodes per map, then look the pod's
        // images up once per distinct map (at 5,000 nodes a lookup per node and image was most
        // of the scheduler's time).
        let mut per_map: HashMap<*const ImageSizes, (&ImageSizes, usize)> = HashMap::new();
        for node in all.iter().filter(|n| !n.images().is_empty()) {
            let images = node.shared_images();
            per_map.entry(Arc::as_ptr(images)).or_insert((images, 0)).1 += 1;
        }
        for (images, nodes) in per_map.into_values() {
            for image in &wanted {
                if images.contains_key(image) {
                    *spread.nodes_with.entry(image.clone()).or_default() += nodes;
                }
            }
        }
        spread.wanted = wanted;
        state.write(STATE_KEY, spread);
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(spread) = state.read::<ImageSpread>(STATE_KEY) else {
            return 0;
        };
        let images = node.images();
        let wanted = &spread.wanted;
        if images.is_empty() {
            return calculate_priority(0, wanted.len());
        }
        let sum: f64 = wanted
            .iter()
            .filter_map(|image| {
                let size = *images.get(image)?;
                let with = spread.nodes_with.get(image).copied().unwrap_or(0);
                let fraction = with as f64 / spread.total.max(1) as f64;
                Some(size as f64 * fraction)
            })
            .sum();
        calculate_priority(sum as i64, wanted.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;
    use k8s_openapi::api::core::v1::ContainerImage;

    fn with_images(name: &str, images: &[(&str, i64)]) -> NodeInfo {
        with_node(node(name, "1", "1Gi", "10"), |n| {
            n.status.get_or_insert_with(Default::default).images = Some(
                images
                    .iter()
                    .map(|(image, size)| ContainerImage {
                        names: Some(vec![image.to_string()]),
                        size_bytes: Some(*size),
                    })
                    .collect(),
            );
        })
    }

    #[test]
    fn image_names_normalise_as_the_runtime_reports_them() {
        assert_eq!(
            qualified_image_name("busybox:1.35"),
            "docker.io/library/busybox:1.35"
        );
        assert_eq!(
            qualified_image_name("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            qualified_image_name("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(
            qualified_image_name("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
    }

    #[test]
    fn the_node_holding_a_big_image_scores_higher_scaled_by_spread() {
        let p = with_spec(pod("p", None, None), |s| {
            s.containers[0].image = Some("gcr.io/big:1".into());
        });
        let nodes = vec![
            with_images("a", &[("gcr.io/big:1", 500 * MB)]),
            with_images("b", &[]),
        ];
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let mut state = CycleState::default();
        ImageLocality.pre_score(&mut state, &p, &feasible, &nodes);
        // 500MB held by one node of two: 250MB effective.
        let expected = MAX_NODE_SCORE * (250 * MB - MIN_THRESHOLD) / (1000 * MB - MIN_THRESHOLD);
        assert_eq!(ImageLocality.score(&state, &p, &nodes[0]), expected);
        assert_eq!(ImageLocality.score(&state, &p, &nodes[1]), 0);
    }

    #[test]
    fn nodes_with_the_same_images_share_a_map_and_each_counts_in_the_spread() {
        let p = with_spec(pod("p", None, None), |s| {
            s.containers[0].image = Some("gcr.io/big:1".into());
        });
        let pool = [("gcr.io/big:1", 800 * MB), ("gcr.io/other:2", MB)];
        let nodes = vec![
            with_images("a", &pool),
            with_images("b", &[("gcr.io/other:2", MB), ("gcr.io/big:1", 800 * MB)]),
            with_images("c", &[("gcr.io/big:1", 800 * MB)]),
            with_images("d", &[("gcr.io/other:2", MB)]),
            with_images("e", &[]),
        ];
        assert!(Arc::ptr_eq(
            nodes[0].shared_images(),
            nodes[1].shared_images()
        ));
        assert!(!Arc::ptr_eq(
            nodes[0].shared_images(),
            nodes[2].shared_images()
        ));
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let mut state = CycleState::default();
        ImageLocality.pre_score(&mut state, &p, &feasible, &nodes);
        // 800MB held by three nodes of five: 480MB effective on each of them.
        let expected = MAX_NODE_SCORE * (480 * MB - MIN_THRESHOLD) / (1000 * MB - MIN_THRESHOLD);
        for holder in &nodes[..3] {
            assert_eq!(ImageLocality.score(&state, &p, holder), expected);
        }
        assert_eq!(ImageLocality.score(&state, &p, &nodes[3]), 0);
        assert_eq!(ImageLocality.score(&state, &p, &nodes[4]), 0);
    }
}
