"""docker-compose.yml stays in line with core/settings.py and workflows/search_attributes.py.

Static checks only: the file is parsed with PyYAML and its `${...}` interpolations are resolved the
way `docker compose` would, with sample values for the required variables. Nothing is started.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from core.settings import Settings
from workflows import search_attributes

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"

# Values a production operator would export before `docker compose up`.
SAMPLE_ENV = {
    "POSTGRES_PASSWORD": "sample-postgres-password",
    "WAYMARK_SECRET_KEY": "sample-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "WAYMARK_PUBLIC_URL": "https://waymark.example.com",
}
REQUIRED_SECRETS = ("WAYMARK_SECRET_KEY", "POSTGRES_PASSWORD", "WAYMARK_PUBLIC_URL")
SA_JOB = "temporal-search-attributes"
WAYMARK_SERVICES = ("migrate", "api", "worker")  # built from the Dockerfile, read Settings
# Must agree between api and worker: same database, cluster, queue, and the same signing key.
SHARED_BY_API_AND_WORKER = (
    "WAYMARK_ENV",
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "WAYMARK_TASK_QUEUE",
    "WAYMARK_PUBLIC_URL",
    "WAYMARK_SECRET_KEY",
)

_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


# ---------------------------------------------------------------- helpers


def interpolate(text: str, env: dict[str, str]) -> str:
    """Resolve compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR?err}`,
    `${VAR:+alt}`, `$VAR` and `$$`. A variable that is unset and has no default is an error here
    (compose would silently substitute an empty string)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        is_set, is_nonempty = value is not None, bool(value)
        if op in (":-", "-"):
            return value if (is_nonempty if op == ":-" else is_set) else arg
        if op in (":?", "?"):
            if not (is_nonempty if op == ":?" else is_set):
                raise ValueError(f"compose would refuse to start: {name} is unset ({arg})")
            return value
        if op in (":+", "+"):
            return arg if (is_nonempty if op == ":+" else is_set) else ""
        if not is_set:
            raise ValueError(
                f"${{{name}}} has no default and no sample value; compose would substitute ''"
            )
        return value

    return _INTERPOLATION.sub(substitute, text)


def load_compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), (
        "docker-compose.yml must be a mapping with a `services:` mapping"
    )
    return data


def service(name: str) -> dict[str, Any]:
    services = load_compose()["services"]
    assert name in services, f"docker-compose.yml has no `{name}` service"
    return services[name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's `environment:` as a dict, whether written as a mapping or as a list."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        env = dict(pairs)
    return {str(k): ("" if v is None else str(v)) for k, v in env.items()}


def resolved_environment(name: str) -> dict[str, str]:
    return {k: interpolate(v, SAMPLE_ENV) for k, v in environment(service(name)).items()}


def command_words(svc: dict[str, Any]) -> list[str]:
    command = svc.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def ports(svc: dict[str, Any]) -> list[tuple[str | None, str | None, int]]:
    """(host_ip, published, target) for each entry of `ports:`, short or long syntax."""
    result = []
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            result.append(
                (
                    entry.get("host_ip"),
                    None if published is None else str(published),
                    int(entry["target"]),
                )
            )
            continue
        spec = interpolate(str(entry), SAMPLE_ENV).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        target = int(parts[-1])
        published = parts[-2] if len(parts) >= 2 else None
        host_ip = parts[0] if len(parts) == 3 else None
        result.append((host_ip, published, target))
    return result


def depends_on(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):  # short syntax: service_started
        return {dep: "service_started" for dep in deps}
    return {dep: (spec or {}).get("condition", "service_started") for dep, spec in deps.items()}


def accepted_env_names() -> set[str]:
    """Every environment variable Settings reads: `<env_prefix><FIELD>` for a field without a
    validation alias, else each string alias (pydantic-settings then ignores the prefixed name)."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"{prefix}{field_name}".upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
    return names


def default(field_name: str) -> Any:
    return Settings.model_fields[field_name].default


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the container would build them: from exactly `env`, no .env file."""
    for var in list(os.environ):
        if var.upper() in accepted_env_names():
            monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return Settings(_env_file=None)


# ---------------------------------------------------------------- tests


def test_required_services_exist() -> None:
    services = load_compose()["services"]
    required = {"postgres", "temporal", "temporal-ui", SA_JOB, "migrate", "api", "worker"}
    missing = sorted(required - services.keys())
    assert not missing, f"docker-compose.yml lacks services: {missing}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("migrate", ["waymark", "db", "upgrade"]),
        ("api", ["waymark", "api"]),
        ("worker", ["waymark", "worker"]),
    ],
)
def test_waymark_services_run_the_waymark_image(name: str, expected: list[str]) -> None:
    svc = service(name)
    assert command_words(svc) == expected, f"`{name}` must run {' '.join(expected)!r}"
    build = svc.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    assert context in (".", "./"), f"`{name}` must be built from the repo's Dockerfile (build: .)"
    images = {service(n).get("image") for n in WAYMARK_SERVICES}
    assert len(images) == 1, f"migrate, api and worker must share one image tag, got {images}"


def test_api_port_matches_settings() -> None:
    api_port = default("api_port")
    targets = [target for _, _, target in ports(service("api"))]
    assert api_port in targets, (
        f"api must publish container port {api_port} (Settings.api_port default), got {targets}"
    )
    env = resolved_environment("api")
    assert env.get("WAYMARK_API_PORT") == str(api_port), (
        f"api's WAYMARK_API_PORT must be {api_port}, the container port compose publishes"
    )
    assert env.get("WAYMARK_API_HOST") == "0.0.0.0", (
        "api must listen on WAYMARK_API_HOST=0.0.0.0 inside its container, else the published "
        "port reaches nothing"
    )


def test_temporal_ui_port_matches_settings() -> None:
    ui_port = default("temporal_ui_port")
    published = {(pub, target) for _, pub, target in ports(service("temporal-ui"))}
    assert (str(ui_port), 8080) in published, (
        f"temporal-ui must publish {ui_port}:8080 (Settings.temporal_ui_port default), "
        f"got {sorted(published)}"
    )


def test_temporal_port_matches_settings() -> None:
    temporal_port = default("temporal_port")
    targets = [target for _, _, target in ports(service("temporal"))]
    assert temporal_port in targets, (
        f"temporal must expose {temporal_port} (Settings.temporal_port default), got {targets}"
    )
    for name in (*WAYMARK_SERVICES, "temporal-ui", SA_JOB):
        address = resolved_environment(name).get("TEMPORAL_ADDRESS")
        assert address == f"temporal:{temporal_port}", (
            f"`{name}` must reach Temporal at temporal:{temporal_port}, got {address!r}"
        )


@pytest.mark.parametrize("name", WAYMARK_SERVICES)
def test_environment_names_are_settings_fields(name: str) -> None:
    accepted = accepted_env_names()
    unknown = sorted(set(environment(service(name))) - accepted)
    assert not unknown, (
        f"`{name}` sets {unknown}, which Settings does not read (typo or missing field?). "
        f"Accepted names: {sorted(accepted)}"
    )


def test_api_and_worker_share_their_settings() -> None:
    api, worker = environment(service("api")), environment(service("worker"))
    for var in SHARED_BY_API_AND_WORKER:
        assert var in api and var in worker, f"api and worker must both set {var}"
        assert api[var] == worker[var], (
            f"api and worker disagree on {var}: {api[var]!r} != {worker[var]!r}"
        )


def test_required_secrets_must_be_supplied() -> None:
    text = COMPOSE_FILE.read_text()
    for var in REQUIRED_SECRETS:
        uses = re.findall(r"\$\{" + var + r"(?:(:?[-?+])[^}]*)?\}", text)
        assert uses, f"docker-compose.yml never references ${{{var}}}"
        assert not re.search(r"(?<!\$)\$" + var + r"\b", text), (
            f"use ${{{var}:?message}}, not ${var}: compose would substitute '' when it is unset"
        )
        assert all(op == ":?" for op in uses), (
            f"every use of {var} must be `${{{var}:?message}}` so compose refuses to start "
            f"without it (found operators {uses}; '' means plain ${{{var}}})"
        )
    api = environment(service("api"))
    assert re.fullmatch(r"\$\{WAYMARK_SECRET_KEY:\?[^}]+\}", api.get("WAYMARK_SECRET_KEY", "")), (
        "api's WAYMARK_SECRET_KEY must be exactly ${WAYMARK_SECRET_KEY:?...}, never a literal"
    )
    password = environment(service("postgres")).get("POSTGRES_PASSWORD", "")
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", password), (
        "postgres's POSTGRES_PASSWORD must be exactly ${POSTGRES_PASSWORD:?...}, never a literal"
    )
    without_secret = {k: v for k, v in SAMPLE_ENV.items() if k != "WAYMARK_SECRET_KEY"}
    with pytest.raises(ValueError, match="WAYMARK_SECRET_KEY"):
        interpolate(api["WAYMARK_SECRET_KEY"], without_secret)


def test_search_attribute_job_registers_exactly_search_attributes_all() -> None:
    job = service(SA_JOB)
    assert str(job.get("image", "")).startswith("temporalio/admin-tools:"), (
        f"`{SA_JOB}` must use the temporalio/admin-tools image (it has the temporal CLI)"
    )
    restart = str(job.get("restart", "no"))
    assert restart == "no" or restart.startswith("on-failure"), (
        f"`{SA_JOB}` is a one-shot job: restart must be 'no' or on-failure, got {restart!r}"
    )
    entrypoint, command = job.get("entrypoint") or [], job.get("command") or []
    parts = [
        *([entrypoint] if isinstance(entrypoint, str) else entrypoint),
        *([command] if isinstance(command, str) else command),
    ]
    script = "\n".join(str(part) for part in parts)
    assert "temporal operator search-attribute create" in script, (
        f"`{SA_JOB}` must run `temporal operator search-attribute create`"
    )
    registered = re.findall(r"--name\s+(\w+)\s+--type\s+(\w+)", script)
    expected = [(key.name, search_attributes.cli_type(key)) for key in search_attributes.ALL]
    assert len(registered) == len(set(registered)), f"`{SA_JOB}` registers duplicates: {registered}"
    missing = sorted(set(expected) - set(registered))
    extra = sorted(set(registered) - set(expected))
    assert not missing and not extra, (
        f"`{SA_JOB}` is out of sync with workflows.search_attributes.ALL: "
        f"missing (name, type) {missing}, not in ALL {extra}"
    )
    namespace = environment(job).get("TEMPORAL_NAMESPACE")
    for name in WAYMARK_SERVICES:
        assert resolved_environment(name).get("TEMPORAL_NAMESPACE") == namespace, (
            f"`{name}` uses another namespace than the one `{SA_JOB}` registers in ({namespace!r})"
        )


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_wait_for_the_one_shot_jobs(name: str) -> None:
    deps = depends_on(service(name))
    for job in ("migrate", SA_JOB):
        assert deps.get(job) == "service_completed_successfully", (
            f"`{name}` must depend on `{job}` with condition service_completed_successfully, "
            f"got {deps.get(job)!r}"
        )


def test_startup_order_uses_healthchecks() -> None:
    postgres = service("postgres")
    test = postgres.get("healthcheck", {}).get("test")
    assert test and "pg_isready" in " ".join(test if isinstance(test, list) else [test]), (
        "postgres needs a pg_isready healthcheck: migrate and temporal wait for service_healthy"
    )
    temporal_test = service("temporal").get("healthcheck", {}).get("test")
    joined = " ".join(temporal_test if isinstance(temporal_test, list) else [temporal_test or ""])
    assert "cluster health" in joined, "temporal needs a `temporal operator cluster health` check"
    expectations = {
        "migrate": {"postgres": "service_healthy"},
        "temporal": {"postgres": "service_healthy"},
        SA_JOB: {"temporal": "service_healthy"},
    }
    for name, wanted in expectations.items():
        deps = depends_on(service(name))
        for dep, condition in wanted.items():
            assert deps.get(dep) == condition, (
                f"`{name}` must depend on `{dep}` with condition {condition}, got {deps.get(dep)!r}"
            )


@pytest.mark.parametrize("name", WAYMARK_SERVICES)
def test_production_settings_validate(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = resolved_environment(name)
    settings = settings_from(env, monkeypatch)
    assert settings.env == "production", f"`{name}` must run with WAYMARK_ENV=production"
    assert settings.database_url == (
        f"postgresql+psycopg://postgres:{SAMPLE_ENV['POSTGRES_PASSWORD']}@postgres:5432/waymark"
    ), f"`{name}` DATABASE_URL must point at the compose postgres, got {settings.database_url!r}"
    assert settings.temporal_address == f"temporal:{default('temporal_port')}"
    assert settings.secret_key == SAMPLE_ENV["WAYMARK_SECRET_KEY"]
    assert settings.public_url == SAMPLE_ENV["WAYMARK_PUBLIC_URL"]
    assert settings.task_queue == default("task_queue"), (
        "the task queue must default to Settings.task_queue so a worker started outside compose "
        "polls the same queue"
    )


def test_production_settings_reject_a_weak_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    env = resolved_environment("api") | {"WAYMARK_SECRET_KEY": "too-short"}
    with pytest.raises(ValueError, match="WAYMARK_SECRET_KEY"):
        settings_from(env, monkeypatch)


def test_production_doc_lists_every_search_attribute() -> None:
    doc = COMPOSE_FILE.parent / "docs" / "PRODUCTION.md"
    assert doc.is_file(), f"{doc} is missing"
    documented = set(re.findall(r"--name\s+(\w+)\s+--type\s+(\w+)", doc.read_text()))
    expected = {(key.name, search_attributes.cli_type(key)) for key in search_attributes.ALL}
    assert documented == expected, (
        "docs/PRODUCTION.md's `temporal operator search-attribute create` command is out of sync "
        f"with workflows.search_attributes.ALL: missing {sorted(expected - documented)}, "
        f"not in ALL {sorted(documented - expected)}"
    )
