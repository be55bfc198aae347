"""The one secret policy of every output: which values are secret, and how they are masked.

Every secret-looking variable of the stack's environment (and any value a caller adds) is masked
in the console, event log, webhooks, record, HTML and JUnit reports and metrics alike.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

REDACTED: Final = "***"


MIN_SECRET_LENGTH: Final = 4  # shorter "secrets" would blank out ordinary words and numbers


# Names whose values are never shown, whatever they hold: the one secret policy of every output.
SECRET_NAME: Final = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE|_KEY$|^KEY$", re.I
)


def secret_values(environment: Mapping[str, str], known: Iterable[str] = ()) -> tuple[str, ...]:
    """Every value to mask: ``known`` and the values of the secret-looking names in the env."""
    named = [value for name, value in environment.items() if SECRET_NAME.search(name)]
    return usable_secrets([*known, *named])


def usable_secrets(secrets: Iterable[str]) -> tuple[str, ...]:
    """The secrets worth hiding, longest first."""
    kept = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH and s.strip()}
    return tuple(sorted(kept, key=lambda s: (-len(s), s)))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of a secret replaced by ``***``.

    Overlapping occurrences are merged, so no fragment of one secret survives the masking of
    another. Secrets under four characters are ignored.
    """
    spans: list[tuple[int, int]] = []
    for secret in usable_secrets(secrets):
        start = text.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    if not spans:
        return text
    spans.sort()
    pieces: list[str] = []
    position = 0
    merged_start, merged_end = spans[0]
    for start, end in spans[1:]:
        if start <= merged_end:
            merged_end = max(merged_end, end)
            continue
        pieces += [text[position:merged_start], REDACTED]
        position = merged_end
        merged_start, merged_end = start, end
    pieces += [text[position:merged_start], REDACTED, text[merged_end:]]
    return "".join(pieces)


def display_url(url: str) -> str:
    """``url`` fit to show: userinfo and query values become ``***``, the fragment is dropped."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{name}={REDACTED}" if sep else REDACTED
        for name, sep, _ in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def masked_json(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` as JSON types with secrets redacted at every level; anything else via ``str()``."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        # NaN and infinities are not JSON; written bare they would break every strict reader.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {
            redact(str(key), secrets): masked_json(item, secrets) for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [masked_json(item, secrets) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return masked_json(dataclasses.asdict(value), secrets)
    return redact(str(value), secrets)
