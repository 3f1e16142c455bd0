"""The Python `kubernetes` client against the in-process apiserver (run by python_client.rs).

Usage: client_test.py KUBECONFIG WORKDIR. Exercises CRUD on several kinds (an HPA through both
autoscaling versions), a watch that sees ADDED/MODIFIED/DELETED, `utils.create_from_yaml` and
the error a missing object gets; prints
"OK" at the end. Any failure raises (non-zero exit).
"""

import os
import sys

from kubernetes import client, config, utils, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
workdir = sys.argv[2]
api = client.ApiClient()
core = client.CoreV1Api(api)
apps = client.AppsV1Api(api)
ns = "py"

core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
assert any(n.metadata.name == ns for n in core.list_namespace().items)

# ConfigMap: create, read, replace, patch, list, delete, then 404.
core.create_namespaced_config_map(ns, {"metadata": {"name": "c1"}, "data": {"a": "1"}})
cm = core.read_namespaced_config_map("c1", ns)
assert cm.data == {"a": "1"}, cm.data
cm.data["b"] = "2"
core.replace_namespaced_config_map("c1", ns, cm)
core.patch_namespaced_config_map("c1", ns, {"data": {"c": "3"}})
cm = core.read_namespaced_config_map("c1", ns)
assert cm.data == {"a": "1", "b": "2", "c": "3"}, cm.data
assert cm.metadata.managed_fields, "managedFields are recorded"
assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["c1"]
core.delete_namespaced_config_map("c1", ns)
try:
    core.read_namespaced_config_map("c1", ns)
    raise AssertionError("deleted configmap still readable")
except ApiException as e:
    assert e.status == 404, e.status

# Secret and Service.
core.create_namespaced_secret(ns, client.V1Secret(
    metadata=client.V1ObjectMeta(name="s1"), data={"k": "dg=="}))
assert core.read_namespaced_secret("s1", ns).data["k"] == "dg=="
svc = core.create_namespaced_service(ns, client.V1Service(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1ServiceSpec(selector={"app": "web"},
                              ports=[client.V1ServicePort(port=80, target_port=8080)])))
assert svc.spec.cluster_ip, "a ClusterIP is allocated"
core.delete_namespaced_service("web", ns)
core.delete_namespaced_secret("s1", ns)

# Deployment: create, scale through patch, read scale, delete.
apps.create_namespaced_deployment(ns, {
    "metadata": {"name": "d1"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d1"}},
             "template": {"metadata": {"labels": {"app": "d1"}},
                          "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}}})
apps.patch_namespaced_deployment_scale("d1", ns, {"spec": {"replicas": 3}})
assert apps.read_namespaced_deployment("d1", ns).spec.replicas == 3
assert apps.read_namespaced_deployment_scale("d1", ns).spec.replicas == 3
apps.delete_namespaced_deployment("d1", ns)

# Watch from a known resourceVersion: ADDED, MODIFIED, DELETED.
rv = core.list_namespaced_config_map(ns).metadata.resource_version
core.create_namespaced_config_map(ns, {"metadata": {"name": "w"}, "data": {"x": "1"}})
core.patch_namespaced_config_map("w", ns, {"data": {"x": "2"}})
core.delete_namespaced_config_map("w", ns)
seen = []
w = watch.Watch()
for event in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                      timeout_seconds=10):
    if event["object"].metadata.name == "w":
        seen.append(event["type"])
    if event["type"] == "DELETED":
        w.stop()
assert seen == ["ADDED", "MODIFIED", "DELETED"], seen

# HorizontalPodAutoscaler: created through autoscaling/v2, read and listed through v1 (one
# object stored once), replaced through v1 without losing the v2 memory metric.
v1hpa = client.AutoscalingV1Api(api)
v2hpa = client.AutoscalingV2Api(api)
v2hpa.create_namespaced_horizontal_pod_autoscaler(ns, {
    "metadata": {"name": "h"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d1"},
             "minReplicas": 1, "maxReplicas": 4,
             "metrics": [
                 {"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 55}}},
                 {"type": "Resource", "resource": {"name": "memory", "target": {
                     "type": "AverageValue", "averageValue": "100Mi"}}}]}})
h1 = v1hpa.read_namespaced_horizontal_pod_autoscaler("h", ns)
assert h1.spec.target_cpu_utilization_percentage == 55, h1.spec
assert h1.status.current_replicas == 0 and h1.status.desired_replicas == 0, h1.status
assert [h.metadata.name for h in
        v1hpa.list_namespaced_horizontal_pod_autoscaler(ns).items] == ["h"]
h1.spec.max_replicas = 6
v1hpa.replace_namespaced_horizontal_pod_autoscaler("h", ns, h1)
h2 = v2hpa.read_namespaced_horizontal_pod_autoscaler("h", ns)
assert h2.spec.max_replicas == 6, h2.spec
assert sorted(m.resource.name for m in h2.spec.metrics) == ["cpu", "memory"], h2.spec.metrics
assert h2.metadata.uid == h1.metadata.uid
v2hpa.delete_namespaced_horizontal_pod_autoscaler("h", ns)

# utils.create_from_yaml with a multi-document file.
path = os.path.join(workdir, "objects.yaml")
with open(path, "w") as f:
    f.write("""apiVersion: v1
kind: ConfigMap
metadata:
  name: from-yaml
data: {k: v}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: from-yaml
spec:
  replicas: 1
  selector: {matchLabels: {app: y}}
  template:
    metadata: {labels: {app: y}}
    spec:
      containers: [{name: c, image: "busybox:1.35"}]
""")
utils.create_from_yaml(api, path, namespace=ns)
assert core.read_namespaced_config_map("from-yaml", ns).data == {"k": "v"}
assert apps.read_namespaced_deployment("from-yaml", ns).spec.replicas == 1
print("OK")
