"""No Docker engine runs here, so the compose file and Dockerfile are checked as documents."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_wires_web_worker_postgres_redis() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "postgres", "redis", "migrate"} <= services.keys()
    for name in ("web", "worker", "postgres", "redis"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert services["migrate"]["command"] == ["yezhu", "migrate"]
    for name in ("web", "worker"):
        env = services[name]["environment"]
        assert env["YEZHU_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["YEZHU_REDIS_URL"].startswith("redis://redis:")
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["command"] == ["yezhu", "worker"]
    assert services["web"]["ports"] == ["8080:8080"]


def test_dockerfile_installs_every_package_and_runs_yezhu() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for package in ("bot", "channels", "nlu", "knowledge", "actions", "migrations"):
        assert f"COPY {package} ./{package}" in text
    # The image carries the licence the package declares (pyproject: license = "Apache-2.0").
    copied = {src for line in text.splitlines() if line.startswith("COPY ") for src in line.split()[1:-1]}
    assert "LICENSE" in copied and (ROOT / "LICENSE").is_file()
    assert "FROM python:3.11" in text and '"yezhu", "run"' in text and "HEALTHCHECK" in text
