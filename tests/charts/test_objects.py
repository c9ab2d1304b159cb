"""Assertions on the rendered objects: what a cluster would receive from `helm install`."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.objects import FULLNAME, env_of, find, kinds, render
from tests.charts.render import (
    CHART,
    CUSTOM_METRICS_API,
    RELEASE,
    SCENARIOS,
    helm,
    render_docs,
    template,
)

# Volume types the "restricted" Pod Security Standard allows.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] == "Deployment":
            specs.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            specs.append((doc["metadata"]["name"], doc["spec"]))
    return specs


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_meet_the_restricted_pod_security_standard(scenario: str, render_scenario) -> None:
    rendered = render_scenario(scenario)
    specs = pod_specs(rendered.docs)
    assert len(specs) >= 2  # the Deployment and the helm test pod
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (name, volume)
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["runAsNonRoot"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            assert not context.get("privileged"), name
            assert container["resources"]["limits"]["memory"], name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_match_pods_and_carry_no_version(scenario: str, render_scenario) -> None:
    rendered = render_scenario(scenario)
    for deployment in rendered.of_kind("Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert not any(key in selector for key in ("helm.sh/chart", "app.kubernetes.io/version"))
        # Exactly one Deployment's pods match each selector.
        others = [
            d for d in rendered.of_kind("Deployment")
            if d is not deployment
            and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]  # fmt: skip
        assert not others
    deployment = rendered.one("Deployment", FULLNAME)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = rendered.one("Service", FULLNAME)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in rendered.of_kind("Deployment")]
    labels += [pod["metadata"]["labels"] for pod in rendered.of_kind("Pod")]
    labels += [
        job["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        for job in rendered.of_kind("CronJob")
    ]
    for policy in rendered.of_kind("NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert any(selector.items() <= x.items() for x in labels), policy["metadata"]["name"]


def test_selectors_survive_a_chart_upgrade(tmp_path: Path) -> None:
    """Deployment selectors are immutable: a new chart version must not change them."""
    bumped = tmp_path / "inference"
    shutil.copytree(CHART, bumped)
    chart_yaml = bumped / "Chart.yaml"
    meta = yaml.safe_load(chart_yaml.read_text())
    meta["version"], meta["appVersion"] = "9.9.9", "9.9.9"
    chart_yaml.write_text(yaml.safe_dump(meta))
    new = render_docs(helm("template", RELEASE, str(bumped), "--set", "drift.enabled=true").stdout)
    old = render_docs(helm("template", RELEASE, str(CHART), "--set", "drift.enabled=true").stdout)
    for name in (FULLNAME, f"{FULLNAME}-drift"):
        old_dep, new_dep = find(old, "Deployment", name), find(new, "Deployment", name)
        assert old_dep["spec"]["selector"] == new_dep["spec"]["selector"]
        assert old_dep["metadata"]["labels"] != new_dep["metadata"]["labels"]  # versions differ


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_graceful_termination_and_spread(scenario: str, render_scenario) -> None:
    rendered = render_scenario(scenario)
    deployment = rendered.one("Deployment", FULLNAME)
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = env_of(rendered.docs)
    assert ports["http"] == int(env["SLIPWAY_PORT"])
    assert ports["grpc"] == int(env["SLIPWAY_GRPC_PORT"])
    assert env["SLIPWAY_HOST"] == "0.0.0.0"
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert spec["terminationGracePeriodSeconds"] > pause + float(env["SLIPWAY_DRAIN_SECONDS"])
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/tmp" in mounts and env["SLIPWAY_MODEL_CACHE_DIR"].startswith("/tmp/")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_grace_period_not_above_drain_plus_pause_is_refused() -> None:
    result = template(
        values={"terminationGracePeriodSeconds": 15, "server.drainSeconds": 10}, check=False
    )
    assert result.returncode != 0
    assert "terminationGracePeriodSeconds (15) must exceed" in result.stderr


def test_config_checksum_rolls_pods_only_when_config_changes() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = find(render(values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum({})
    assert len(base) == 64
    assert checksum({"server.maxQueue": 512}) != base
    assert checksum({"model.mlflow.uri": "models:/demo@champion"}) != base
    assert checksum({"resources.limits.cpu": "3"}) == base


def test_config_reaches_the_service_as_its_settings() -> None:
    env = env_of(render({"server.maxBatchSize": 32, "server.extraSettings": {"THREADS": 3}}))
    assert env["SLIPWAY_MAX_BATCH_SIZE"] == "32"
    assert env["SLIPWAY_THREADS"] == "3"
    assert env["SLIPWAY_MODEL_SOURCE"] == "models:/demo@production"
    assert env["SLIPWAY_MAX_UPLOAD_BYTES"] == str(10 * 1024 * 1024)
    assert all(key.startswith(("SLIPWAY_", "MLFLOW_")) for key in env)
    assert env["SLIPWAY_PREDICTION_LOG_PATH"] == ""


def test_defaults_autoscale_the_deployment_with_cpu_and_a_pod_metric(render_scenario) -> None:
    """The HPA of the defaults; the per-pod metric where the cluster serves custom metrics."""
    rendered = render_scenario("defaults")
    bare = [m["type"] for m in rendered.one("HorizontalPodAutoscaler")["spec"]["metrics"]]
    assert bare == ["Resource"]
    docs = render_docs(template(api_versions=[CUSTOM_METRICS_API]).stdout)
    deployment = find(docs, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    hpa = find(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1", "Deployment", deployment["metadata"]["name"],
    )  # fmt: skip
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "slipway_inference_in_flight_requests"
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0
    assert behavior["scaleUp"]["policies"]


def test_keda_replaces_the_hpa(render_scenario) -> None:
    rendered = render_scenario("keda")
    assert not rendered.of_kind("HorizontalPodAutoscaler")
    scaled = rendered.one("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == FULLNAME
    (prometheus,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    assert "slipway_inference_in_flight_requests" in prometheus["metadata"]["query"]
    assert f'job="{FULLNAME}"' in prometheus["metadata"]["query"]
    assert "replicas" not in rendered.one("Deployment", FULLNAME)["spec"]


def test_gpu_scenario_requests_a_gpu_on_the_gpu_pool(render_scenario) -> None:
    rendered = render_scenario("gpu")
    spec = rendered.one("Deployment", FULLNAME)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-torch")
    assert spec["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    env = env_of(rendered.docs)
    assert (env["SLIPWAY_BACKEND"], env["SLIPWAY_DEVICE"]) == ("torch", "cuda")
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods"]


def test_cpu_scenarios_do_not_touch_gpus(render_scenario) -> None:
    rendered = render_scenario("defaults")
    spec = rendered.one("Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert env_of(rendered.docs)["SLIPWAY_DEVICE"] == "cpu"


def test_pvc_model_mounts_the_folder_read_only(render_scenario) -> None:
    rendered = render_scenario("pvc-model")
    deployment = rendered.one("Deployment", FULLNAME)
    spec = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "model"]
    assert volume["persistentVolumeClaim"] == {"claimName": "slipway-models", "readOnly": True}
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "model"]
    assert mount["readOnly"] is True and mount["subPath"] == "fashion/current"
    assert env_of(rendered.docs)["SLIPWAY_MODEL_SOURCE"] == mount["mountPath"]
    assert deployment["spec"]["replicas"] == 3
    assert not rendered.of_kind("HorizontalPodAutoscaler")


def test_pvc_source_without_a_claim_is_refused() -> None:
    result = template(values={"model.source": "pvc"}, check=False)
    assert result.returncode != 0
    assert "claimName" in result.stderr


def test_full_monitoring_objects_select_this_release(render_scenario) -> None:
    rendered = render_scenario("full-monitoring")
    service = rendered.one("Service", FULLNAME)
    monitor = rendered.one("ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    rule = rendered.one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(a["labels"]["team"] == "ml-platform" for a in alerts)
    assert all(a["labels"]["severity"] in {"warning", "critical"} for a in alerts)
    assert all(
        a["annotations"]["runbook_url"].startswith("https://git.example.com/") for a in alerts
    )
    dashboards = [c for c in rendered.of_kind("ConfigMap") if "grafana_dashboard" in
                  c["metadata"]["labels"]]  # fmt: skip
    assert len(dashboards) == len(list(CHART.glob("files/dashboards/*.json")))
    for configmap in dashboards:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["namespace"] == "monitoring"
        assert configmap["metadata"]["annotations"]["grafana_folder"] == "ML platform"
        (body,) = configmap["data"].values()
        assert yaml.safe_load(body)["uid"]


def test_full_monitoring_wires_secrets_ingress_and_staging(render_scenario) -> None:
    rendered = render_scenario("full-monitoring")
    container = rendered.one("Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["SLIPWAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "inference-token"
    for key in ("MLFLOW_TRACKING_USERNAME", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "mlflow-credentials", "key": key, "optional": True}
    assert env_of(rendered.docs)["SLIPWAY_STAGING_SOURCE"] == "models:/fashion@staging"
    ingress = rendered.one("Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    policy = rendered.one("NetworkPolicy", FULLNAME)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert any(53 in {p["port"] for p in rule["ports"]} for rule in policy["spec"]["egress"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_network_policy_opens_only_the_api_ports(scenario: str, render_scenario) -> None:
    rendered = render_scenario(scenario)
    http, grpc = {"port": "http", "protocol": "TCP"}, {"port": "grpc", "protocol": "TCP"}
    for policy in rendered.of_kind("NetworkPolicy"):
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            assert rule["ports"] in ([http], [http, grpc])
            assert rule["from"], "an ingress rule without sources would allow everyone"
    # API clients reach gRPC where they reach HTTP; the metrics scraper only HTTP.
    api, scrape = rendered.one("NetworkPolicy", FULLNAME)["spec"]["ingress"]
    assert (api["ports"], scrape["ports"]) == ([http, grpc], [http])
    # Every pod of the release is covered by a policy; the helm test pod accepts nothing.
    test_policy = rendered.one("NetworkPolicy", f"{FULLNAME}-test")
    assert "ingress" not in test_policy["spec"]


def test_grpc_port_on_the_pod_service_and_policy_or_nowhere() -> None:
    on = render({"server.grpcPort": 9000, "service.grpcPort": 9001})
    container = find(on, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "grpc", "containerPort": 9000, "protocol": "TCP"} in container["ports"]
    (port,) = [p for p in find(on, "Service")["spec"]["ports"] if p["name"] == "grpc"]
    assert (port["port"], port["targetPort"], port["appProtocol"]) == (9001, "grpc", "grpc")
    assert env_of(on)["SLIPWAY_GRPC_PORT"] == "9000"
    off = render({"server.grpcPort": 0})
    assert env_of(off)["SLIPWAY_GRPC_PORT"] == "0"
    assert "grpc" not in yaml.safe_dump(
        [find(off, kind) for kind in ("Deployment", "Service", "NetworkPolicy")]
    )


def test_disabled_features_render_nothing(render_scenario) -> None:
    defaults = kinds(render_scenario("defaults").docs)
    assert not defaults & {"ServiceMonitor", "PrometheusRule", "ScaledObject", "Ingress",
                           "PersistentVolumeClaim"}  # fmt: skip
    names = [d["metadata"]["name"] for d in render_scenario("defaults").docs]
    assert not [n for n in names if "drift" in n or "dashboard" in n]
    off = render({
        "autoscaling.enabled": False, "podDisruptionBudget.enabled": False,
        "networkPolicy.enabled": False, "serviceAccount.create": False,
    })  # fmt: skip
    assert not kinds(off) & {"HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                             "ServiceAccount"}  # fmt: skip
    assert find(off, "Deployment")["spec"]["replicas"] == 2
    spec = find(off, "Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "default"


def test_helm_test_pod_sends_a_real_image(render_scenario) -> None:
    from PIL import Image

    rendered = render_scenario("defaults")
    (pod,) = rendered.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    image = Image.open(io.BytesIO(base64.b64decode(env["PROBE_PNG_BASE64"])))
    image.load()
    assert image.format == "PNG" and image.size == (28, 28)
    assert env["BASE_URL"] == f"http://{FULLNAME}.ml-serving.svc:80"
    script = container["command"][-1]
    assert "$BASE_URL/readyz" in script and "$BASE_URL/v1/predict" in script
    assert "files=@/tmp/probe.png" in script


def test_helm_test_pod_reads_the_token_from_a_file(render_scenario) -> None:
    (pod,) = render_scenario("full-monitoring").of_kind("Pod")
    (volume,) = [v for v in pod["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "inference-token"
    container = pod["spec"]["containers"][0]
    assert not [e for e in container["env"] if "valueFrom" in e]
    assert "/var/run/secrets/slipway/token" in container["command"][-1]


def test_image_digest_pins_every_slipway_container() -> None:
    digest = "sha256:" + "ab" * 32
    docs = render({"image.digest": digest, "drift.enabled": True})
    images = {
        c["image"]
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"ghcr.io/slipway/serve@{digest}"}
