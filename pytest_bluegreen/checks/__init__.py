"""What the gates measure, as functions a team's own gates may call too.

HTTP probes of a colour (:mod:`.probe`), side-by-side latency (:mod:`.latency`), container
hardening (:mod:`.hardening`): part of the public API, like :mod:`pytest_bluegreen` itself.
"""
