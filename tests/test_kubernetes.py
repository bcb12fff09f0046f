"""deploy/kubernetes: the kustomize base and its components render, validate against
Kubernetes' schemas, agree with the image and the contract, and the generated copies of the
alerts and the dashboard are current.

kubernetes-validate knows the core kinds only: for the Prometheus Operator's ServiceMonitor and
PrometheusRule it has no schema (it warns and passes them), so those are checked here against
the fields of their CRDs that these manifests use.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from deploy.kubernetes import generate as generator
from tests.support.components import require_binary
from zego_exporter import __version__
from zego_exporter.cli import cli
from zego_exporter.storage import StorageError, open_store

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # the oldest release still supported upstream when written

# The sizing the Deployment's resources are computed from: `python -m bench.sizing`, the peak
# RSS of serve with discovery and storage on and two scrapes at once (docs/kubernetes.md).
SIZED_FOR_TASKS = 10_000
BASELINE_BYTES = 35.5 * 2**20
PEAK_PER_TASK = 2.43e3

Doc = dict[str, Any]




def kustomize(directory: Path) -> list[Doc]:
    kubectl = require_binary("kubectl")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def overlay(tmp_path: Path, components: list[str]) -> list[Doc]:
    """What a user's overlay of the base with these components renders to."""
    relative = os.path.relpath(BASE, tmp_path)  # kustomize refuses absolute paths
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [relative],
        "components": [f"{relative}/components/{name}" for name in components],
    }))
    return kustomize(tmp_path)


def one(docs: list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return kustomize(BASE)


@pytest.fixture(scope="module")
def deployment(base: list[Doc]) -> Doc:
    return one(base, "Deployment")


@pytest.fixture(scope="module")
def container(deployment: Doc) -> Doc:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def memory_bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"(\d+)([KMG]i?|k)?", quantity)
    assert match, quantity
    return int(match[1]) * units.get(match[2] or "", 1)


def dockerfile_env(name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", (ROOT / "Dockerfile").read_text())
    assert match, f"the Dockerfile sets no {name}"
    return match[1].strip('"')


# --- the generated copies ---------------------------------------------------------------


def test_generated_files_are_current() -> None:
    assert generator.main(["--check"]) == 0, (
        "deploy/kubernetes is out of date: run python deploy/kubernetes/generate.py")


def test_check_mode_names_a_stale_file_and_regenerating_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, text in generator.render().items():
        (tmp_path / name).write_text(text)
    stale = tmp_path / generator.PROMETHEUS_RULE
    stale.write_text(stale.read_text().replace("severity: critical", "severity: info"))

    assert generator.main(["--check"], directory=tmp_path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and generator.PROMETHEUS_RULE in err and "out of date" in err
    assert generator.main([], directory=tmp_path) == 0
    assert generator.main(["--check"], directory=tmp_path) == 0


def test_prometheus_rule_groups_are_exactly_alerts_yml(base: list[Doc]) -> None:
    alerts = yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text())
    rule = one(base, "PrometheusRule")

    assert rule["spec"] == {"groups": alerts["groups"]}


def test_generator_refuses_an_alerts_file_it_cannot_copy_whole() -> None:
    with pytest.raises(ValueError, match="only top-level key"):
        generator.prometheus_rule("groups: []\nextra: 1\n")


def test_dashboard_configmap_holds_the_dashboard_byte_for_byte(base: list[Doc]) -> None:
    dashboard = (ROOT / "grafana" / "zego-digital-human.json").read_text(encoding="utf-8")
    configmap = one(base, "ConfigMap")

    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"  # a string, not 1
    assert configmap["data"] == {"zego-digital-human.json": dashboard}
    # `kubectl apply` (client side) stores the whole object in an annotation of at most
    # 256 KiB; stay well under it.
    assert len(dashboard.encode()) < 128 * 1024


# --- kustomize and kubernetes-validate ---------------------------------------------------

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


def validate_core(docs: list[Doc]) -> Iterator[str]:
    """kubernetes-validate --strict on the core objects; yields the kinds it validated."""
    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        yield doc["kind"]


def test_base_renders_the_expected_objects(base: list[Doc]) -> None:
    assert sorted(doc["kind"] for doc in base) == sorted(
        ["Deployment", "Service", "ConfigMap", "ServiceMonitor", "PrometheusRule"])
    assert {doc["metadata"]["labels"]["app.kubernetes.io/name"] for doc in base} == {
        "zego-exporter"}


def test_core_objects_pass_kubernetes_validate_strict(base: list[Doc]) -> None:
    assert sorted(validate_core(base)) == ["ConfigMap", "Deployment", "Service"]


def test_kubernetes_validate_strict_catches_an_unknown_field(deployment: Doc) -> None:
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validate_has_no_schema_for_the_operator_kinds(base: list[Doc]) -> None:
    # Why the two are checked by hand below; should a release ship their schemas, use them.
    for kind in OPERATOR_KINDS:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(one(base, kind), KUBERNETES_VERSION, strict=True)


def test_persistent_storage_component(tmp_path: Path) -> None:
    docs = overlay(tmp_path, ["persistent-storage"])
    deployment = one(docs, "Deployment")
    claim = one(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}

    assert volumes["storage"] == {
        "name": "storage",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    }
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert sorted(validate_core(docs)) == [
        "ConfigMap", "Deployment", "PersistentVolumeClaim", "Service"]


def test_without_prometheus_operator_component(tmp_path: Path) -> None:
    docs = overlay(tmp_path, ["without-prometheus-operator"])

    assert {doc["kind"] for doc in docs} == {"Deployment", "Service", "ConfigMap"}
    assert sorted(validate_core(docs)) == ["ConfigMap", "Deployment", "Service"]


def test_both_components_together(tmp_path: Path) -> None:
    # A cluster without the operator that keeps the file: the two patch different objects.
    docs = overlay(tmp_path, ["persistent-storage", "without-prometheus-operator"])

    assert {doc["kind"] for doc in docs} == {
        "Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"}
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert sorted(validate_core(docs)) == [
        "ConfigMap", "Deployment", "PersistentVolumeClaim", "Service"]


# --- the Deployment ---------------------------------------------------------------------


def test_image_is_this_version(container: Doc) -> None:
    assert container["image"] == f"zego-exporter:{__version__}"
    assert container["args"] == ["serve"]


def test_runs_locked_down(deployment: Doc, container: Doc) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "fsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "USER 65534:65534" in (ROOT / "Dockerfile").read_text()


def test_probes_use_the_contract_endpoints_on_the_named_port(container: Doc) -> None:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 9877}  # contract: --web.listen-address defaults to :9877
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}


def test_memory_is_sized_from_the_measured_figures(container: Doc) -> None:
    peak = BASELINE_BYTES + SIZED_FOR_TASKS * PEAK_PER_TASK  # scrapes of an HA pair included
    requests = container["resources"]["requests"]
    limits = container["resources"]["limits"]

    assert memory_bytes(requests["memory"]) >= peak
    assert memory_bytes(requests["memory"]) <= 1.25 * peak  # sized, not a guess
    assert memory_bytes(limits["memory"]) >= 1.5 * peak  # headroom for what no bench saw
    assert memory_bytes(limits["memory"]) <= 2.5 * peak
    assert "cpu" in requests and "cpu" in limits
    task_count = f"{SIZED_FOR_TASKS:,}"
    assert f"Sized for {task_count} tracked tasks" in (BASE / "deployment.yaml").read_text()


def serve_envvars() -> set[str]:
    names: set[str] = set()
    for param in cli.commands["serve"].params:
        if isinstance(param, click.Option) and isinstance(param.envvar, str):
            names.add(param.envvar)
    return names


def test_environment_names_are_the_contract_ones(container: Doc) -> None:
    known = serve_envvars()
    for variable in container["env"]:
        assert variable["name"] in known, variable["name"]


def test_secret_and_storage_are_files_on_volumes(deployment: Doc, container: Doc) -> None:
    env = {variable["name"]: variable for variable in container["env"]}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"][
        "volumes"]}

    assert "ZEGO_SERVER_SECRET" not in env  # a variable would show in the environment
    secret_file = Path(env["ZEGO_SERVER_SECRET_FILE"]["value"])
    secret = volumes["secret"]["secret"]
    assert Path(mounts["secret"]["mountPath"]) == secret_file.parent
    assert mounts["secret"]["readOnly"] is True
    assert [item["path"] for item in secret["items"]] == [secret_file.name]
    assert secret["defaultMode"] == 0o440  # readable through fsGroup 65534, by nobody else
    assert env["ZEGO_APP_ID"]["valueFrom"]["secretKeyRef"]["name"] == secret["secretName"]

    storage_path = Path(env["ZEGO_STORAGE_PATH"]["value"])
    assert Path(mounts["storage"]["mountPath"]) == storage_path.parent
    assert "emptyDir" in volumes["storage"]
    # The image's default and directory are the same, so the volume lands where it writes.
    assert dockerfile_env("ZEGO_STORAGE_PATH") == str(storage_path)
    assert f"-m 0700 {storage_path.parent}" in (ROOT / "Dockerfile").read_text()
    assert Path(mounts["tmp"]["mountPath"]) == Path("/tmp")


# --- Service, ServiceMonitor, PrometheusRule ---------------------------------------------

# The ServiceMonitor and PrometheusRule fields these manifests use, from the Prometheus
# Operator's CRDs (monitoring.coreos.com/v1). A key outside these sets is a typo the operator
# would reject or, worse, silently drop.
SERVICE_MONITOR_SPEC_KEYS = {"selector", "endpoints", "namespaceSelector", "jobLabel",
                             "targetLabels", "podTargetLabels", "sampleLimit"}
ENDPOINT_KEYS = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
                 "tlsConfig", "basicAuth", "authorization", "honorLabels", "relabelings",
                 "metricRelabelings", "params"}
RULE_GROUP_KEYS = {"name", "rules", "interval", "limit", "partial_response_strategy",
                   "query_offset", "labels"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
# The CRDs' pattern for a Prometheus duration.
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                      r"(([0-9]+)s)?(([0-9]+)ms)?)$")


def seconds(duration: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", duration))


def test_service_selects_the_pods_on_the_named_port(base: list[Doc], deployment: Doc) -> None:
    service = one(base, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 9877, "targetPort": "http"}]
    # With a ServiceMonitor, the job label is the Service's name: the one
    # ZegoDigitalHumanExporterDown matches.
    assert service["metadata"]["name"] == "zego-exporter"
    assert 'job="zego-exporter"' in (ROOT / "prometheus" / "alerts.yml").read_text()


def test_service_monitor_structure(base: list[Doc]) -> None:
    monitor = one(base, "ServiceMonitor")
    service = one(base, "Service")

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"]
    assert set(monitor["spec"]) <= SERVICE_MONITOR_SPEC_KEYS
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items())
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"], "spec.endpoints is required"
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= ENDPOINT_KEYS, set(endpoint) - ENDPOINT_KEYS
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"  # contract: the default telemetry path
        assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
        assert seconds(endpoint["scrapeTimeout"]) < seconds(endpoint["interval"])


def test_prometheus_rule_structure(base: list[Doc]) -> None:
    rule = one(base, "PrometheusRule")

    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"]
    assert rule["spec"]["groups"], "spec.groups is empty"
    for group in rule["spec"]["groups"]:
        assert set(group) <= RULE_GROUP_KEYS, set(group) - RULE_GROUP_KEYS
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert set(item) <= RULE_KEYS, set(item) - RULE_KEYS
            assert ("alert" in item) != ("record" in item)
            assert isinstance(item["expr"], str) and item["expr"].strip()
            assert DURATION.match(item.get("for", "0"))
            assert all(isinstance(v, str) for v in item.get("labels", {}).values())
            assert all(isinstance(v, str) for v in item.get("annotations", {}).values())


def test_the_checks_above_catch_a_typo(base: list[Doc]) -> None:
    monitor = yaml.safe_load(yaml.safe_dump(one(base, "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["scrapeTimout"] = "10s"
    with pytest.raises(AssertionError):
        test_service_monitor_structure([*(d for d in base if d["kind"] != "ServiceMonitor"),
                                        monitor])


# --- the docs describe these files, not copies of them ----------------------------------

DOCS_PAGE = ROOT / "docs" / "kubernetes.md"
REPOSITORY_URL = "https://github.com/zego-exporter/zego-exporter//"
YAML_BLOCK = re.compile(r"^ *```yaml\n(.*?)^ *```", re.MULTILINE | re.DOTALL)


def test_docs_link_every_file_of_the_base() -> None:
    page = DOCS_PAGE.read_text()
    for path in sorted(BASE.iterdir()):
        if path.name == "__pycache__":
            continue
        target = f"../deploy/kubernetes/{path.name}{'/' if path.is_dir() else ''}"
        if path.is_dir():
            for component in sorted(path.iterdir()):
                assert f"]({target}{component.name}/)" in page, component
        else:
            assert f"]({target})" in page, path


def test_docs_state_the_sizing_the_deployment_uses(container: Doc) -> None:
    page = DOCS_PAGE.read_text()
    resources = container["resources"]
    assert f"**{SIZED_FOR_TASKS:,} tracked tasks**" in page
    assert f"`{resources['requests']['memory']}`" in page
    assert f"`{resources['limits']['memory']}`" in page


def test_the_docs_overlay_renders(tmp_path: Path) -> None:
    """The install example, with the repository URL pointed at this checkout."""
    blocks = [textwrap.dedent(block) for block in YAML_BLOCK.findall(DOCS_PAGE.read_text())
              if "kind: Kustomization" in block]
    assert len(blocks) == 1, "expected one overlay example in docs/kubernetes.md"
    relative = os.path.relpath(ROOT, tmp_path) + "/"
    local = re.sub(r"\?ref=\S+", "", blocks[0].replace(REPOSITORY_URL, relative))
    (tmp_path / "kustomization.yaml").write_text(local)
    docs = kustomize(tmp_path)

    assert {doc["metadata"].get("namespace") for doc in docs} == {"monitoring"}
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"registry.example.com/zego-exporter:{__version__}")
    assert one(docs, "PersistentVolumeClaim")


def test_every_component_the_docs_name_exists() -> None:
    named = re.findall(rf"{re.escape(REPOSITORY_URL)}(\S+?)\?ref=", DOCS_PAGE.read_text())
    assert named
    for path in named:
        assert (ROOT / path / "kustomization.yaml").is_file(), path


def test_docs_quote_what_a_second_pod_on_the_storage_file_logs(tmp_path: Path) -> None:
    # With persistent-storage, a pod deleted by hand gets its replacement at once; on the same
    # node both mount the ReadWriteOnce volume, and the exporter's lock refuses the second.
    # The page must quote that refusal as the exporter words it, so a user can search for it.
    path = tmp_path / "zego-exporter.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from zego_exporter.storage import open_store; "
         "open_store(sys.argv[1]); print('held', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StorageError) as refused:
            open_store(str(path), lock_wait=0)  # the message after the wait, without waiting
    finally:
        holder.kill()
        holder.wait(timeout=10)
    message = str(refused.value).replace(str(path), "...")
    message = re.sub(r"\(pid \d+\)", "(pid N)", message)
    page = " ".join(DOCS_PAGE.read_text().split())
    assert f"`{message}; running with memory only`" in page, message
    assert "Recreate" in page and "ReadWriteOncePod" in page


def test_the_docs_strategy_patch_turns_a_defaulted_rolling_update_into_recreate(
    tmp_path: Path, deployment: Doc,
) -> None:
    # What the API server holds after the base was applied: the defaulted RollingUpdate, which
    # `kubectl apply` of the persistent-storage component cannot clear (the page's workaround).
    patch = re.search(r"patch deployment zego-exporter \\\n\s*-p '(.*)'", DOCS_PAGE.read_text())
    assert patch, "docs/kubernetes.md has no strategy patch command"
    applied = yaml.safe_load(yaml.safe_dump(deployment))
    applied["spec"]["strategy"] = {"type": "RollingUpdate",
                                   "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(applied))
    result = subprocess.run(
        [require_binary("kubectl"), "patch", "--local", "-o", "yaml",
         "-f", str(tmp_path / "deployment.yaml"), "-p", patch[1]],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["spec"]["strategy"] == {"type": "Recreate"}


def test_docker_page_names_the_storage_path_the_image_sets() -> None:
    page = (ROOT / "docs" / "docker.md").read_text()
    assert f"ZEGO_STORAGE_PATH={dockerfile_env('ZEGO_STORAGE_PATH')}" in page
    assert "Python 3.11" in page and "not the real base" in page
