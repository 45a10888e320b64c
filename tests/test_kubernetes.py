"""deploy/kubernetes: rendered by kustomize (kubectl's), checked by kubernetes-validate --strict
and KEDA's published schema, and read for what an operator relies on."""

from __future__ import annotations

import copy
import ipaddress
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from afterimage.keys import QUEUES

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent
SCHEMAS = Path(__file__).parent / "schemas"
KEDA = {"ScaledObject": "keda-scaledobject-v1alpha1.json",
        "TriggerAuthentication": "keda-triggerauthentication-v1alpha1.json"}
Doc = dict[str, Any]


@cache
def rendered(where: str) -> str:
    done = subprocess.run([str(BIN / "kubectl"), "kustomize", str(KUBE / where)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def docs(where: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(rendered(where)) if d]


def one(items: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [d for d in items if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    return found


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "--no-warn", str(path)],
                          capture_output=True, text=True, timeout=300, check=False)


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as the API server's strict field validation
    does (a structural schema only prunes them)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def keda_errors(doc: Doc) -> list[str]:
    schema = strict(json.loads((SCHEMAS / KEDA[doc["kind"]]).read_text()))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("where", ["base", "overlays/example"])
def test_every_resource_passes_strict_validation(where: str, tmp_path: Path) -> None:
    items = docs(where)
    builtin = [d for d in items if not d["apiVersion"].startswith("keda.sh/")]
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    done = kubernetes_validate(path)
    assert done.returncode == 0, done.stdout + done.stderr
    custom = [d for d in items if d["apiVersion"].startswith("keda.sh/")]
    assert sorted(d["kind"] for d in custom) == ["ScaledObject", "TriggerAuthentication"]
    for doc in custom:
        assert keda_errors(doc) == [], doc["kind"]


def test_strict_validation_refuses_a_misspelt_field(tmp_path: Path) -> None:
    items = docs("overlays/example")
    deployment = copy.deepcopy(one(items, "Deployment", "afterimage-poller"))
    deployment["spec"]["replica"] = 2
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    assert kubernetes_validate(path).returncode != 0
    scaled = copy.deepcopy(one(items, "ScaledObject", "afterimage-worker"))
    scaled["spec"]["maxReplicas"] = 3
    assert any("maxReplicas" in e for e in keda_errors(scaled))
    del scaled["spec"]["maxReplicas"]
    scaled["spec"]["triggers"][0].pop("type")
    assert keda_errors(scaled) != []


def test_the_receiver_is_probed_spread_and_scaled_on_cpu() -> None:
    items = docs("base")
    pod = one(items, "Deployment", "afterimage-receiver")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    hpa = one(items, "HorizontalPodAutoscaler", "afterimage-receiver")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "afterimage-receiver"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    service = one(items, "Service", "afterimage-receiver")
    assert service["spec"]["selector"] == pod_labels(items, "afterimage-receiver")
    for name in ("afterimage-receiver", "afterimage-worker", "afterimage-poller"):
        pdb = one(items, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"] == pod_labels(items, name)


def pod_labels(items: list[Doc], name: str) -> Any:
    return one(items, "Deployment", name)["spec"]["template"]["metadata"]["labels"]


def test_workers_scale_on_every_rq_queue_and_pollers_run_twice() -> None:
    items = docs("base")
    scaled = one(items, "ScaledObject", "afterimage-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "afterimage-worker"
    lists = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]
             if t["type"] == "redis"}
    assert lists == {f"rq:queue:{q}" for q in QUEUES}
    auth = one(items, "TriggerAuthentication", "afterimage-redis")
    assert {t["name"] for t in auth["spec"]["secretTargetRef"]} == {"afterimage-secrets"}
    assert one(items, "Deployment", "afterimage-poller")["spec"]["replicas"] == 2


@pytest.mark.parametrize("where", ["base", "overlays/example"])
def test_every_pod_runs_as_non_root_read_only_with_limits(where: str) -> None:
    items = docs(where)
    names = {(d["kind"], d["metadata"]["name"]) for d in items}
    for deployment in (d for d in items if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
        tmp = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"/tmp"} <= {m["mountPath"] for m in container["volumeMounts"]
                               if m["name"] in tmp}
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][part])
            refs = [("ConfigMap", e["configMapRef"]["name"]) if "configMapRef" in e
                    else ("Secret", e["secretRef"]["name"]) for e in container["envFrom"]]
            if where != "base":  # the base leaves the Secret to the overlay
                assert set(refs) <= names
    if where != "base":
        auth = one(items, "TriggerAuthentication", "afterimage-redis")
        secret = one(items, "Secret", "afterimage-secrets")
        (ref,) = auth["spec"]["secretTargetRef"]
        assert ref["name"] == secret["metadata"]["name"]  # renamed with the generator's hash
        assert ref["key"] in secret["data"]


def test_egress_reaches_the_internet_but_not_metadata_or_private_ranges() -> None:
    items = docs("base")
    policy = one(items, "NetworkPolicy", "afterimage-egress")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "afterimage"}
    blocks = [p["ipBlock"] for rule in policy["spec"]["egress"] for p in rule["to"]
              if "ipBlock" in p]

    def allowed(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(b["cidr"])
                   and not any(ip in ipaddress.ip_network(e) for e in b.get("except", []))
                   for b in blocks if ipaddress.ip_network(b["cidr"]).version == ip.version)

    for public in ("8.8.8.8", "151.101.1.1", "2606:4700::1111"):
        assert allowed(public), public
    for private in ("169.254.169.254", "10.0.0.1", "10.96.0.10", "172.16.5.4", "192.168.1.1",
                    "127.0.0.1", "100.64.0.1", "fd00:ec2::254", "fe80::1", "::1"):
        assert not allowed(private), private
    ingress = one(items, "NetworkPolicy", "afterimage-receiver-ingress")
    assert ingress["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_the_overlay_applies_its_patches() -> None:
    base, overlay = docs("base"), docs("overlays/example")
    assert one(base, "ScaledObject", "afterimage-worker")["spec"]["maxReplicaCount"] == 20
    assert one(overlay, "ScaledObject", "afterimage-worker")["spec"]["maxReplicaCount"] == 40
    assert one(overlay, "HorizontalPodAutoscaler", "afterimage-receiver")["spec"][
        "maxReplicas"] == 6
    worker = one(overlay, "Deployment", "afterimage-worker")["spec"]["template"]["spec"]
    assert worker["containers"][0]["resources"]["limits"]["memory"] == "2Gi"
    assert worker["containers"][0]["image"] == "registry.example.com/afterimage:0.1.0"
    assert {d["metadata"].get("namespace") for d in overlay if d["kind"] != "Namespace"} == {
        "afterimage"}
    config = one(overlay, "ConfigMap", "afterimage-config")["data"]
    assert config["AFTERIMAGE_STORAGE_URL"].startswith("s3://")
    assert config["AFTERIMAGE_HOST"] == "0.0.0.0"  # merged with the base's
