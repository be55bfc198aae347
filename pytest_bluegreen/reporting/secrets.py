"""The one secret policy of every output: which values are secret, and how they are masked.

Every secret-looking variable of the stack's environment, every variable the settings name in
``secret_names``, and any value a caller adds are masked (``***``) in the console, event log,
webhooks, record, HTML and JUnit reports and metrics alike. :class:`SecretPolicy` is that policy;
the functions under it are its implementation, kept for the callers that pass bare values.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from pytest_bluegreen.core.config import StackConfig

REDACTED: Final = "***"


MIN_SECRET_LENGTH: Final = 4  # shorter "secrets" would blank out ordinary words and numbers


# Names whose values are never shown, whatever they hold: the one secret policy of every output.
SECRET_NAME: Final = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE|_KEY$|^KEY$", re.I
)


@dataclass(frozen=True, slots=True)
class SecretPolicy:
    """THE secret policy: the values to mask, and the masking of text, JSON-like values and URLs.

    ``values`` are the secrets themselves (longest first, the too-short dropped); ``names`` the
    variable names the settings add to :data:`SECRET_NAME`'s. A policy is iterable over its
    values, so it goes wherever bare secrets (``Iterable[str]``) are taken.
    """

    values: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", usable_secrets(self.values))
        object.__setattr__(self, "names", tuple(self.names))

    @classmethod
    def for_config(cls, config: StackConfig, known: Iterable[str] = ()) -> SecretPolicy:
        """The policy of a stack: its environment as Compose sees it and its ``secret_names``.

        ``known``: values already masked (e.g. the policy before the env file was written).
        """
        return cls.for_environment(config.environment, config.reporting.secret_names, known)

    @classmethod
    def for_environment(
        cls, environment: Mapping[str, str], names: Iterable[str] = (), known: Iterable[str] = ()
    ) -> SecretPolicy:
        """The values of ``environment``'s secret-looking variables and of ``names``, and known."""
        names = tuple(names)
        return cls(secret_values(environment, known, names), names)

    @classmethod
    def of(cls, secrets: Iterable[str]) -> SecretPolicy:
        """``secrets`` as a policy: a policy itself, or bare values to mask."""
        return secrets if isinstance(secrets, SecretPolicy) else cls(tuple(secrets))

    def refreshed(self, config: StackConfig) -> SecretPolicy:
        """The stack's environment read again (a first deploy writes the env file), plus these."""
        names = dict.fromkeys((*self.names, *config.reporting.secret_names))
        return SecretPolicy.for_environment(config.environment, names, self.values)

    def with_values(self, secrets: Iterable[str]) -> SecretPolicy:
        """The same policy with more values to mask."""
        return SecretPolicy((*self.values, *secrets), self.names)

    def is_secret_name(self, name: str) -> bool:
        """Whether variable ``name``'s value is secret: it looks secret, or the settings say so."""
        return is_secret_name(name, self.names)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        return redact(text, self.values)

    def mask_json(self, value: Any) -> Any:
        """``value`` as JSON types, every string (and key) at every level masked."""
        return masked_json(value, self.values)

    def display_url(self, url: str) -> str:
        """``url`` fit to show: no userinfo, query values or fragment, and no secret anywhere."""
        return self.redact(display_url(url))

    def host_only_url(self, url: str) -> str:
        """Scheme, host and port only: for URLs whose path carries a token (chat webhooks)."""
        return self.redact(host_only_url(url))

    def mask_environment(self, environment: Mapping[str, str]) -> dict[str, str]:
        """``environment`` to show: secret variables' values ``***``, secrets in the rest too."""
        return {
            name: REDACTED if self.is_secret_name(name) else self.redact(value)
            for name, value in environment.items()
        }

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)


def is_secret_name(name: str, names: Iterable[str] = ()) -> bool:
    """``name`` looks secret (:data:`SECRET_NAME`) or is one of ``names`` (ignoring case)."""
    return bool(SECRET_NAME.search(name)) or name.casefold() in {n.casefold() for n in names}


def secret_values(
    environment: Mapping[str, str], known: Iterable[str] = (), names: Iterable[str] = ()
) -> tuple[str, ...]:
    """Every value to mask: ``known``, and those of the env's secret-looking names and ``names``.

    ``names`` are the settings' ``secret_names``, matched ignoring case.
    """
    names = tuple(names)
    named = [value for name, value in environment.items() if is_secret_name(name, names)]
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


def host_only_url(url: str) -> str:
    """``scheme://host:port/***``: nothing of the path, query or userinfo."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{port}' if port else ''}/{REDACTED}"


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
