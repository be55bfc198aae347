"""The images a test session's throwaway stacks build, and their removal."""

from __future__ import annotations

import subprocess
import warnings


class ThrowawayImages:
    """The images a test session's throwaway stacks built, removed when the session ends.

    The reference stack names its images after the Compose project (``bgtest-db:15``...), so
    every throwaway project builds its own from the same cached layers, and what it built is
    known. Removed only at the session's end: while any tag holds the layers, the next
    project's build is a cache hit, not a rebuild.
    """

    def __init__(self) -> None:
        self.prefixes: set[str] = set()

    def add(self, project: str) -> None:
        """Every image of Compose project ``project``'s services: ``<project>-*``."""
        self.prefixes.add(f"{project}-")

    def add_repository(self, repository: str) -> None:
        """Every tag of one repository the session built under a fixed name."""
        self.prefixes.add(f"{repository}:")

    def references(self) -> list[str]:
        listed = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.split()  # fmt: skip
        return [ref for ref in listed if ref.startswith(tuple(self.prefixes))]

    def remove(self) -> None:
        """Untag them; an image a container still uses stays, with a warning."""
        references = self.references()
        if not references:
            return
        removed = subprocess.run(
            ["docker", "rmi", *references], capture_output=True, text=True, timeout=300
        )
        if removed.returncode != 0:
            warnings.warn(f"test images left behind: {removed.stderr.strip()}", stacklevel=1)
