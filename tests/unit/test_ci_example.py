"""The example GitHub Actions workflow deploys, keeps its evidence, and attaches it to a release."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "github-actions" / "deploy.yml"


def load_workflow() -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    if True in loaded:
        loaded["on"] = loaded.pop(True)
    return loaded


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return load_workflow()


@pytest.fixture(scope="module")
def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = workflow["jobs"].values()
    found: list[dict[str, Any]] = job["steps"]
    return found


def deploy_step(steps: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    (found,) = [(i, s) for i, s in enumerate(steps) if "pytest --bg-deploy" in s.get("run", "")]
    return found


def test_it_runs_on_the_stacks_host_for_pushes_and_releases(workflow: dict[str, Any]) -> None:
    assert "published" in workflow["on"]["release"]["types"]
    assert "push" in workflow["on"]
    (job,) = workflow["jobs"].values()
    assert "self-hosted" in job["runs-on"]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert workflow["permissions"]["contents"] == "write"


def test_the_job_deploys_the_release_with_reports(steps: list[dict[str, Any]]) -> None:
    _, step = deploy_step(steps)
    command = " ".join(step["run"].replace("\\\n", " ").split())
    assert '--bg-deploy --bg-release "$RELEASE"' in command
    assert "--self-contained-html" in command
    assert re.search(r"--html=\S+\.html", command)
    assert re.search(r"--junitxml=\S+\.xml", command)
    assert "if" not in step  # the deploy itself runs only when everything before it passed
    # The checkout keeps the untracked deploy state (.env, .bluegreen/).
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["clean"] is False


def test_the_evidence_is_uploaded_even_when_the_deploy_fails(steps: list[dict[str, Any]]) -> None:
    index, step = deploy_step(steps)
    command = step["run"]
    html = re.search(r"--html=(\S+)", command)
    junit = re.search(r"--junitxml=(\S+)", command)
    assert html
    assert junit
    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert steps.index(upload) > index
    assert "always()" in upload["if"]
    paths = upload["with"]["path"].split()
    assert {html[1], junit[1], ".bluegreen/last-deploy.json"} <= set(paths)
    assert ".bluegreen/metrics/bluegreen.prom" in paths
    # upload-artifact v4.4+ leaves hidden files out unless told: .bluegreen/ is hidden.
    assert upload["with"]["include-hidden-files"] is True
    junit_report = [s for s in steps if "junit" in s.get("uses", "")]
    assert all("always()" in s["if"] for s in junit_report)


def test_a_release_gets_the_html_report_attached(steps: list[dict[str, Any]]) -> None:
    index, step = deploy_step(steps)
    html = re.search(r"--html=(\S+)", step["run"])
    assert html
    (attach,) = [s for s in steps if "gh release upload" in s.get("run", "")]
    assert steps.index(attach) > index
    assert "always()" in attach["if"]
    assert "github.event_name == 'release'" in attach["if"]
    assert html[1] in attach["run"].split()
    assert "--clobber" in attach["run"]
    assert attach["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert attach["env"]["TAG"] == "${{ github.event.release.tag_name }}"
    assert '"$TAG"' in attach["run"]


def test_every_action_is_pinned_to_a_major_version(steps: list[dict[str, Any]]) -> None:
    uses = [s["uses"] for s in steps if "uses" in s]
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", action), action
