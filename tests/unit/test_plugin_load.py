"""What the installed plugin loads into a pytest run that uses no ``--bg-*`` option."""

from __future__ import annotations

import pytest

# Loaded only by a hook or fixture that needs it: never by a run without a --bg-* option.
NOT_AT_LOAD = (
    "docker",
    "requests",
    "locust",
    "testinfra",
    "yaml",
    "pytest_bluegreen.adapters",
    "pytest_bluegreen.checks",
    "pytest_bluegreen.commands",
    "pytest_bluegreen.core.config",
    "pytest_bluegreen.core.deployment",
    "pytest_bluegreen.core.record",
    "pytest_bluegreen.core.state",
    "pytest_bluegreen.gates",
    "pytest_bluegreen.reporting",
    "pytest_bluegreen.stage_tracker",
)


def test_a_run_without_bg_options_loads_no_deploy_machinery(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        f"""
        import sys

        def test_loaded(request):
            assert request.config.pluginmanager.has_plugin("pytest_bluegreen.fixtures")
            heavy = {NOT_AT_LOAD!r}
            assert [m for m in sys.modules if m.startswith(heavy)] == []
        """
    )
    # Only our plugin: the dependencies' plugins import Locust, testinfra and requests.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest_subprocess("-p", "pytest_bluegreen.plugin")
    result.assert_outcomes(passed=1)
