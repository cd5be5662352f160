"""The Kubernetes deployment (``pipelines/deploy``) agrees with the code and with Dagster's chart.

No Docker, Helm or cluster here: the checks are the ones a file can fail on its own. The values use
only keys of the official chart's values schema, set only settings the code reads, hold no secret,
and match the production instance; the image serves the code location ``workspace.yaml`` loads.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import dagster
import dagster_postgres
import pytest
import yaml

from pipelines.settings import CELERY_BROKER_VARIABLE, REDIS_URL_VARIABLE, REPO_ROOT

DEPLOY = REPO_ROOT / "pipelines" / "deploy"
PRODUCTION_INSTANCE = REPO_ROOT / "pipelines" / "dagster.production.yaml"
SETTING = re.compile(r"(SYNCTERA|DAGSTER_PG)_[A-Z_]+")

CHART_VERSION = "1.13.27"
"""The chart's version is Dagster's: it must be the Dagster release the project installs."""

SECRET_SETTINGS = {"SYNCTERA_API_KEY", REDIS_URL_VARIABLE, CELERY_BROKER_VARIABLE, "DAGSTER_PG_PASSWORD"}
"""Settings whose values are secrets (a key, or a URL that may hold a password): Secrets only."""

NOT_DEPLOYED = {
    "SYNCTERA_SANDBOX_API_KEY": "the built-in sandbox on loopback only",
    CELERY_BROKER_VARIABLE: "runs keep the in-process executor: one run, one pod",
    "SYNCTERA_WORK_DIR": "read only with an s3:// lake; these values put the lake on a volume",
}

PG_SETTINGS = {
    "DAGSTER_PG_HOST": ("postgresql", "postgresqlHost"),
    "DAGSTER_PG_PORT": ("postgresql", "service", "port"),
    "DAGSTER_PG_USER": ("postgresql", "postgresqlUsername"),
    "DAGSTER_PG_DB": ("postgresql", "postgresqlDatabase"),
    "DAGSTER_PG_PASSWORD": ("global", "postgresqlSecretName"),  # the Secret's name, never the password
}
"""Where the chart takes each setting of dagster.production.yaml (it writes its own instance file)."""


def keys(leaves: str, nested: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Chart keys: ``leaves`` (space-separated) hold Kubernetes' or free values; ``nested`` have keys of
    their own ([keys] for a list of objects)."""
    return {**dict.fromkeys(leaves.split()), **(nested or {})}


# The keys these values may use, from the chart's values schema: dagster-io/dagster,
# helm/dagster/values.schema.json at commit bdb8547fab497826eeec292bc160b549a0a329ef (a 1.x chart; no
# copy tagged 1.13.27 was at hand). The run launcher's and the user deployment's keys were also read in
# the templates that use them (templates/helpers/instance/_run-launcher.tpl at a07d616f,
# charts/dagster-user-deployments/templates/deployment-user.yaml at 36f72b17).
IMAGE = keys("repository tag pullPolicy")
USER_DEPLOYMENT = keys(
    "name dagsterApiGrpcArgs codeServerArgs deploymentNamespace port env envConfigMaps envSecrets "
    "annotations nodeSelector affinity tolerations podSecurityContext securityContext resources "
    "livenessProbe readinessProbe startupProbe labels volumeMounts volumes schedulerName initContainers "
    "sidecarContainers",
    {"image": IMAGE, "includeConfigInLaunchedRuns": keys("enabled")},
)
K8S_RUN_LAUNCHER = keys(
    "imagePullPolicy jobNamespace loadInclusterConfig kubeconfigFile envConfigMaps envSecrets envVars "
    "volumeMounts volumes labels failPodOnRunFailure resources schedulerName securityContext",
    {
        "image": IMAGE,
        "runK8sConfig": keys(
            "containerConfig podSpecConfig podTemplateSpecMetadata jobSpecConfig jobMetadata"
        ),
    },
)
RUN_COORDINATOR = keys(
    "enabled type",
    {
        "config": keys(
            "customRunCoordinator",
            {
                "queuedRunCoordinator": keys(
                    "maxConcurrentRuns tagConcurrencyLimits dequeueIntervalSeconds dequeueNumWorkers "
                    "dequeueUseThreads blockOpConcurrencyLimitedRuns"
                )
            },
        )
    },
)
DAEMON = keys(
    "enabled heartbeatTolerance env envConfigMaps envSecrets deploymentLabels labels nodeSelector affinity "
    "tolerations podSecurityContext securityContext resources livenessProbe readinessProbe startupProbe "
    "annotations runMonitoring runRetries sensors schedules schedulerName volumeMounts volumes "
    "initContainerResources",
    {"image": IMAGE, "runCoordinator": RUN_COORDINATOR},
)
CHART_KEYS = keys(
    "dagsterWebserver generatePostgresqlPasswordSecret generateCeleryConfigSecret rabbitmq redis flower "
    "ingress imagePullSecrets computeLogManager scheduler busybox migrate serviceAccount retention "
    "additionalInstanceConfig",
    {
        "global": keys("postgresqlSecretName dagsterHome serviceAccountName celeryConfigSecretName"),
        "dagster-user-deployments": keys(
            "enabled enableSubchart imagePullSecrets", {"deployments": [USER_DEPLOYMENT]}
        ),
        "postgresql": keys(
            "image enabled postgresqlHost postgresqlUsername postgresqlPassword postgresqlDatabase "
            "postgresqlParams postgresqlScheme",
            {"service": keys("port")},
        ),
        "runLauncher": keys(
            "type",
            {"config": keys("celeryK8sRunLauncher customRunLauncher", {"k8sRunLauncher": K8S_RUN_LAUNCHER})},
        ),
        "dagsterDaemon": DAEMON,
        "pythonLogs": keys("pythonLogLevel managedPythonLoggers dagsterHandlerConfig"),
        "telemetry": keys("enabled"),
    },
)
RUN_LAUNCHER_TYPES = {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"}
RUN_COORDINATOR_TYPES = {"QueuedRunCoordinator", "CustomRunCoordinator"}


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def deployment(values: dict[str, Any]) -> dict[str, Any]:
    (only,) = values["dagster-user-deployments"]["deployments"]
    return dict(only)


@pytest.fixture(scope="module")
def run_launcher(values: dict[str, Any]) -> dict[str, Any]:
    return dict(values["runLauncher"]["config"]["k8sRunLauncher"])


def unknown_keys(given: Mapping[str, Any], known: Mapping[str, Any], path: str = "") -> Iterator[str]:
    for key, value in given.items():
        if key not in known:
            yield path + key
        elif isinstance(known[key], dict) and isinstance(value, dict):
            yield from unknown_keys(value, known[key], f"{path}{key}.")
        elif isinstance(known[key], list):
            for index, item in enumerate(value):
                yield from unknown_keys(item, known[key][0], f"{path}{key}[{index}].")


def env_names(node: Any) -> Iterator[str]:
    """Every environment variable the values set, in any ``env`` (a mapping or a list of name/value)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, dict):
                yield from value
            elif key == "env" and isinstance(value, list):
                yield from (item["name"] for item in value)
            else:
                yield from env_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from env_names(item)


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def settings_the_code_reads() -> set[str]:
    """The SYNCTERA_* and DAGSTER_PG_* names in the settings, the code location and the production
    instance: string constants only, so a name merely mentioned in a message does not count."""
    names = set()
    for module in ("settings.py", "definitions.py"):
        tree = ast.parse((REPO_ROOT / "pipelines" / module).read_text())
        names |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and SETTING.fullmatch(str(node.value))
        }
    return names | production_pg_settings()


def production_pg_settings() -> set[str]:
    postgres_db = yaml.safe_load(PRODUCTION_INSTANCE.read_text())["storage"]["postgres"]["postgres_db"]
    return {field["env"] for field in postgres_db.values() if isinstance(field, dict)}


def created_secrets() -> dict[str, set[str]]:
    """``kubectl create secret generic NAME --from-literal=KEY=…`` in the deployment's README."""
    readme = (DEPLOY / "README.md").read_text()
    commands = re.findall(r"kubectl create secret generic (\S+)((?:\s*\\\n\s+--from-literal=\S+)+)", readme)
    return {name: set(re.findall(r"--from-literal=([^=\s]+)=", literals)) for name, literals in commands}


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_variables() -> dict[str, str]:
    """ENV and ARG names with their values (``NAME=value`` forms only, as this Dockerfile writes them)."""
    found = {}
    for instruction, rest in dockerfile():
        if instruction in ("ENV", "ARG"):
            found.update(pair.split("=", 1) for pair in rest.split() if "=" in pair)
    return found


def test_the_key_check_catches_a_misspelled_key() -> None:
    misspelled = {"runLauncher": {"config": {"k8sRunLauncher": {"resource": {}}}}}
    assert list(unknown_keys(misspelled, CHART_KEYS)) == ["runLauncher.config.k8sRunLauncher.resource"]


def test_the_values_use_only_keys_of_the_official_chart(values: dict[str, Any]) -> None:
    assert list(unknown_keys(values, CHART_KEYS)) == []
    assert values["runLauncher"]["type"] in RUN_LAUNCHER_TYPES
    assert values["dagsterDaemon"]["runCoordinator"]["type"] in RUN_COORDINATOR_TYPES


def test_the_values_set_only_settings_the_code_reads(values: dict[str, Any]) -> None:
    project_names = {name for name in env_names(values) if SETTING.fullmatch(name)}
    assert project_names, "the values set no SYNCTERA_* setting"
    assert project_names <= settings_the_code_reads()


def test_every_setting_is_in_the_values_in_a_secret_or_left_out_with_a_reason(values: dict[str, Any]) -> None:
    synctera = {name for name in settings_the_code_reads() if name.startswith("SYNCTERA_")}
    placed = set(env_names(values)) | set().union(*created_secrets().values()) | set(NOT_DEPLOYED)
    assert synctera - placed == set()


def test_secrets_come_only_from_kubernetes_secrets(
    values: dict[str, Any], deployment: dict[str, Any]
) -> None:
    assert SECRET_SETTINGS & set(env_names(values)) == set()
    assert SECRET_SETTINGS & set(dockerfile_variables()) == set()
    assert [url for url in strings(values) if re.search(r"://[^/@\s]*:[^/@\s]*@", url)] == []
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert values["generatePostgresqlPasswordSecret"] is False
    # Each Secret the values name is one the README creates, holding the secret settings that are deployed.
    secrets = created_secrets()
    referenced = {secret["name"] for secret in deployment["envSecrets"]}
    assert referenced <= set(secrets)
    assert SECRET_SETTINGS - set(NOT_DEPLOYED) - {"DAGSTER_PG_PASSWORD"} <= set().union(
        *(secrets[name] for name in referenced)
    )
    # The chart reads the instance's password from this key of that Secret (DAGSTER_PG_PASSWORD).
    assert secrets[values["global"]["postgresqlSecretName"]] == {"postgresql-password"}


def test_the_instance_is_the_production_instance(values: dict[str, Any]) -> None:
    production = yaml.safe_load(PRODUCTION_INSTANCE.read_text())
    assert set(PG_SETTINGS) == production_pg_settings()
    for path in PG_SETTINGS.values():
        node: Any = values
        for key in path:
            node = node[key]
        assert node not in ("", None), ".".join(path)
    assert values["postgresql"]["enabled"] is False
    postgres_db = production["storage"]["postgres"]["postgres_db"]
    assert values["postgresql"]["postgresqlScheme"] == postgres_db["scheme"]
    assert values["dagsterDaemon"]["enabled"] is True
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert (coordinator["enabled"], coordinator["type"]) == (True, production["run_coordinator"]["class"])
    assert (
        coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"]
        == production["run_coordinator"]["config"]["max_concurrent_runs"]
    )
    assert values["pythonLogs"]["managedPythonLoggers"] == production["python_logs"]["managed_python_loggers"]
    assert values["pythonLogs"]["pythonLogLevel"] == production["python_logs"]["python_log_level"]
    assert values["telemetry"]["enabled"] == production["telemetry"]["enabled"]


def test_the_image_serves_the_code_location_the_workspace_loads(deployment: dict[str, Any]) -> None:
    (cmd,) = [json.loads(rest) for instruction, rest in dockerfile() if instruction == "CMD"]
    module = cmd[cmd.index("-m") + 1]
    assert cmd[:3] == ["dagster", "api", "grpc"]
    assert importlib.util.find_spec(module) is not None
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    assert [location["python_module"] for location in workspace["load_from"]] == [module]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert int(cmd[cmd.index("-p") + 1]) == deployment["port"]
    # The chart starts the code server and the run pods through the container's args: an ENTRYPOINT
    # would be put in front of them.
    assert "ENTRYPOINT" not in {instruction for instruction, _ in dockerfile()}


def test_the_image_installs_the_versions_make_test_passed_with() -> None:
    runs = [rest for instruction, rest in dockerfile() if instruction == "RUN"]
    copies = [rest.split() for instruction, rest in dockerfile() if instruction == "COPY"]
    (install,) = [rest for rest in runs if "pip install" in rest]
    assert "-c constraints.txt" in install
    assert any("constraints.txt" in copied for copied in copies)
    assert "!constraints.txt" in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()


def test_the_image_runs_as_a_user_and_where_the_chart_expects(
    values: dict[str, Any], deployment: dict[str, Any], run_launcher: dict[str, Any]
) -> None:
    (user,) = [rest for instruction, rest in dockerfile() if instruction == "USER"]
    assert user not in ("root", "0")
    assert run_launcher["runK8sConfig"]["podSpecConfig"]["securityContext"]["runAsUser"] == int(user)
    variables = dockerfile_variables()
    assert variables["DAGSTER_HOME"] == values["global"]["dagsterHome"]
    # The lake: one absolute path, the same in the image, the settings and the run pods' mount.
    lake = deployment["env"]["SYNCTERA_DATA_DIR"]
    assert lake.startswith("/")
    assert variables["SYNCTERA_DATA_DIR"] == lake
    (mount,) = [mount for mount in run_launcher["volumeMounts"] if mount["mountPath"] == lake]
    (volume,) = [volume for volume in run_launcher["volumes"] if volume["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"]


def test_run_pods_get_the_settings_and_their_own_resources(
    deployment: dict[str, Any], run_launcher: dict[str, Any]
) -> None:
    # includeConfigInLaunchedRuns gives run pods the code location's env and Secrets, and its resources
    # would replace the run launcher's: so the code server sets none.
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert "resources" not in deployment
    assert run_launcher["resources"]["requests"]["memory"] == "512Mi"
    assert run_launcher["resources"]["limits"]["memory"] == "1Gi"


def test_the_chart_the_image_and_the_project_are_one_dagster_release() -> None:
    assert dagster.__version__ == CHART_VERSION
    # Dagster's libraries (dagster-postgres, dagster-k8s) share one version line, pinned to dagster's.
    assert dockerfile_variables()["DAGSTER_K8S_VERSION"] == dagster_postgres.__version__
    for readme in (REPO_ROOT / "README.md", DEPLOY / "README.md"):
        versions = set(re.findall(r"dagster/dagster\s+--version (\S+)", readme.read_text()))
        assert versions == {CHART_VERSION}, readme
    assert f"at version {CHART_VERSION}" in (DEPLOY / "helm-values.yaml").read_text()
