"""A team's own conftest.py, copied into the swarm test's project: trouble on cue.

``BGSWARM_CHAOS`` lists ``<stage>:<action>:<target>`` items; when ``<stage>`` of a deploy ends,
the action runs and a line goes to ``.bluegreen/chaos.log``:

- ``stop-node:<container>``: the node's engine stops (``docker stop`` of the Docker-in-Docker
  node, on this machine's own engine), in the background: the next stage runs meanwhile;
- ``kill-lb:<tcp://node:2375>``: the loadbalancer replica on that node is killed, and the next
  stage starts once it is dead (Swarm starts a new one, which adopts a peer's live colour).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

HOST_ENGINE = "unix:///var/run/docker.sock"


def pytest_bluegreen_stage_ended(
    config: Any, stage: str, outcome: str, duration_s: float, message: str
) -> None:
    for item in filter(None, os.environ.get("BGSWARM_CHAOS", "").split(",")):
        after, _, rest = item.partition(":")
        action, _, target = rest.partition(":")
        if after != stage:
            continue
        if action == "stop-node":
            argv = ["docker", "-H", HOST_ENGINE, "stop", "-t", "1", target]
        elif action == "kill-lb":
            project = os.environ["BGSWARM_PROJECT"]
            label = f"com.docker.swarm.service.name={project}_loadbalancer"
            find = f"docker -H {target} ps -q --filter label={label}"
            argv = ["sh", "-c", f"docker -H {target} kill $({find})"]
        else:
            raise ValueError(f"unknown chaos action {action!r}")
        if action == "kill-lb":
            subprocess.run(argv, capture_output=True, timeout=60, check=False)
        else:
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = Path(".bluegreen") / "chaos.log"
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"{time.time():.3f} after {stage}: {action} {target}\n")
