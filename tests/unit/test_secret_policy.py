"""One secret policy: every secret-looking variable of the stack's environment, in every output."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_bluegreen.core.config import StackConfig
from pytest_bluegreen.core.deployment import Deployment
from pytest_bluegreen.reporting.secrets import secret_values


def test_secret_looking_names_are_secrets_whatever_they_are_called() -> None:
    env = {"REDIS_PASSWORD": "hunter2-redis", "API_TOKEN": "tok-123456", "HOST": "db.internal"}
    assert set(secret_values(env, ["known-one"])) == {"hunter2-redis", "tok-123456", "known-one"}


def test_a_deploy_masks_every_secret_of_the_stack_on_screen_and_in_its_log(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=pg-secret-value\n")
    config = StackConfig(
        project_dir=tmp_path,
        state_dir=tmp_path / "state",
        env_file=env_file,
        env={"REDIS_PASSWORD": "hunter2-redis"},  # not one of the reference stack's own
    )
    shown: list[str] = []
    deployment = Deployment(config, "r1", progress=shown.append)
    env_file.write_text("POSTGRES_PASSWORD=pg-secret-value\nSTATS_PASSWORD=written-later\n")
    deployment._mask_stack_secrets()  # as prerequisites do once the env file is made

    deployment.say("test", "redis hunter2-redis, pg pg-secret-value, stats written-later")
    deployment.events.close()

    assert shown == ["redis ***, pg ***, stats ***"]
    (line,) = config.log_file.read_text().splitlines()
    assert json.loads(line)["message"] == "redis ***, pg ***, stats ***"
    assert deployment.notifier.secrets == deployment.secrets
