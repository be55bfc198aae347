"""The deploy's event log: one JSON object per line, every string through the secret policy."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from pytest_bluegreen.core.record import utc_timestamp
from pytest_bluegreen.reporting.secrets import SecretPolicy

LEVELS: Final[tuple[str, ...]] = ("debug", "info", "warning", "error")


_ENVELOPE_KEYS: Final = frozenset({"ts", "level", "event", "deploy_id"})


class EventLog:
    """Troubleshooting log: one JSON object per line, appended to a file.

    Each object has ts (ISO UTC, ms), level, event and deploy_id, then the fields. Each line is
    flushed as it is written, so a deploy killed half-way leaves its log up to the kill. The
    file is private to the user (0600), even when it existed with a wider mode. ``secrets``: a
    :class:`SecretPolicy` (or bare values), applied to every line; it may be replaced while the
    log runs (``log.secrets = policy``).
    """

    def __init__(self, path: Path, deploy_id: str, secrets: Iterable[str] = ()) -> None:
        self.path = path
        self.deploy_id = deploy_id
        self.policy = SecretPolicy.of(secrets)
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            self._file = os.fdopen(descriptor, "a", encoding="utf-8")
        except BaseException:
            os.close(descriptor)
            raise

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values masked in every line."""
        return self.policy.values

    @secrets.setter
    def secrets(self, secrets: Iterable[str]) -> None:
        self.policy = SecretPolicy.of(secrets)

    def emit(self, event: str, level: str = "info", **fields: Any) -> dict[str, Any]:
        """Write one event and return it as written (redacted, JSON types only)."""
        if level not in LEVELS:
            raise ValueError(f"event level {level!r} is not one of {', '.join(LEVELS)}")
        clashing = _ENVELOPE_KEYS & fields.keys()
        if clashing:
            raise ValueError(f"event field names {sorted(clashing)} are reserved for the envelope")
        entry = {
            "ts": utc_timestamp(),
            "level": level,
            "event": event,
            "deploy_id": self.deploy_id,
            **fields,
        }
        written: dict[str, Any] = self.policy.mask_json(entry)
        # ASCII escapes keep undecodable process output (lone surrogates) writable.
        line = json.dumps(written, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file.closed:
                raise ValueError(f"event log {self.path} is closed")
            self._file.write(line)
            self._file.flush()
        return written

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
