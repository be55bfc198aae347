from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pytest_bluegreen.checks.latency import (
    Percentiles,
    RequestError,
    TargetLatency,
    budget_problems,
    measure,
    pool,
    regression,
)
from pytest_bluegreen.core.load_figures import percentile
from pytest_bluegreen.gates import GATES_DIR

SUITE = GATES_DIR / "latency" / "test_latency.py"
# The reference stack's suite, which runs the packaged gate's tests.
REFERENCE_SUITE = Path(__file__).resolve().parents[2] / "suites" / "latency" / "test_latency.py"


class Stub(ThreadingHTTPServer):
    """A colour on 127.0.0.1: delays and statuses per path, a log of requests in arrival order."""

    daemon_threads = True

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.name = name
        self.log = log
        self.delays: dict[str, float] = {}
        self.statuses = {"/broken": 500, "/redirect": 302, "/missing": 404}
        self.spikes: dict[int, float] = {}  # request number (from 0) -> extra delay, once
        self.connections = 0
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK
    server: Stub

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_GET(self) -> None:
        stub = self.server
        stub.log.append((stub.name, self.path))
        number, stub.requests = stub.requests, stub.requests + 1
        time.sleep(stub.delays.get(self.path, 0.0) + stub.spikes.pop(number, 0.0))
        status = stub.statuses.get(self.path, 200)
        body = b"hello " * 100
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def log() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def stubs(log: list[tuple[str, str]]) -> Iterator[dict[str, Stub]]:
    servers = {name: Stub(name, log) for name in ("blue", "green")}
    threads = [
        threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True)
        for s in servers.values()
    ]
    for thread in threads:
        thread.start()
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


def urls(stubs: dict[str, Stub]) -> dict[str, str]:
    return {name: stub.url for name, stub in stubs.items()}


def test_percentiles_are_the_load_modules_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert Percentiles.of(values) == Percentiles(100, 50.0, 99.0)
    assert Percentiles.of(values).p99_ms == percentile(sorted(values), 99)
    assert Percentiles.of([]) == Percentiles(0, 0.0, 0.0)


def test_requests_are_interleaved_warm_up_first_and_the_first_target_alternates(
    stubs: dict[str, Stub], log: list[tuple[str, str]]
) -> None:
    result = measure(urls(stubs), ["/a", "/b"], rounds=3)
    warmup = [("blue", "/a"), ("green", "/a"), ("blue", "/b"), ("green", "/b")]
    blue_first = [("blue", "/a"), ("green", "/a"), ("blue", "/b"), ("green", "/b")]
    green_first = [("green", "/a"), ("blue", "/a"), ("green", "/b"), ("blue", "/b")]
    assert log == warmup + blue_first + green_first + blue_first
    assert result.complete
    assert (result.rounds, result.rounds_done) == (3, 3)
    # the warm-up is not timed: one sample per round and path
    assert {name: t.samples_ms for name, t in result.targets.items()}.keys() == {"blue", "green"}
    for target in result.targets.values():
        assert [len(s) for s in target.samples_ms.values()] == [3, 3]
        assert target.errors == []
    # one keep-alive connection per target
    assert [stub.connections for stub in stubs.values()] == [1, 1]


def test_samples_and_percentiles_per_target_and_path(stubs: dict[str, Stub]) -> None:
    stubs["green"].delays["/api"] = 0.2
    result = measure(urls(stubs), ["/", "/api"], rounds=5)
    blue, green = result.targets["blue"], result.targets["green"]
    assert min(green.samples_ms["/api"]) >= 200
    assert green.per_path["/api"].p50_ms >= 200
    assert blue.per_path["/api"].p50_ms < 200
    assert green.per_path["/"].p50_ms < 200
    assert green.overall == Percentiles.of(green.samples_ms["/"] + green.samples_ms["/api"])
    assert green.overall.requests == 10
    assert green.overall.p99_ms == max(green.samples_ms["/api"])
    assert green.slowest(1)[0][0] == "/api"
    table = result.table()
    assert "blue p50" in table
    assert "green p99" in table
    assert "/api" in table
    assert "5/5 rounds" in table
    assert "errors: blue 0, green 0" in table


def test_errors_are_counted_and_never_timed(stubs: dict[str, Stub]) -> None:
    targets = {**urls(stubs), "gone": "http://127.0.0.1:9"}  # discard port: refused
    result = measure(targets, ["/broken", "/redirect", "/missing"], rounds=2, timeout_s=2)
    blue = result.targets["blue"]
    assert blue.samples_ms["/broken"] == []
    assert blue.samples_ms["/missing"] == []
    assert len(blue.samples_ms["/redirect"]) == 2  # a 3xx is an answer, and is not followed
    assert [e.error for e in blue.errors if e.path == "/broken"] == ["HTTP 500"] * 3
    assert [e.warmup for e in blue.errors if e.path == "/broken"] == [True, False, False]
    assert len(blue.errors) == 6
    assert ("blue", "/elsewhere") not in stubs["blue"].log
    gone = result.targets["gone"]
    assert len(gone.errors) == 9
    assert all(e.error.startswith("ConnectionError") for e in gone.errors)
    assert gone.overall.requests == 0
    assert budget_problems(gone, 250, 500) == [
        f"no request to {gone.url} succeeded: {gone.error_summary()}"
    ]
    assert "; and 4 more" in gone.error_summary()
    problems = budget_problems(blue, 250, 500)
    assert "/broken: no successful request to time" in problems
    assert "/missing: no successful request to time" in problems
    assert "errors: blue 6, green 6, gone 9" in result.table()


def test_a_request_that_hangs_is_a_timeout_error(stubs: dict[str, Stub]) -> None:
    stubs["blue"].delays["/hang"] = 1.0
    start = time.perf_counter()
    result = measure(urls(stubs), ["/hang"], rounds=1, timeout_s=0.2)
    assert time.perf_counter() - start < 1.5  # 2 s without the timeout
    assert [e.error.split(":")[0] for e in result.targets["blue"].errors] == ["ReadTimeout"] * 2
    assert result.targets["green"].errors == []


def test_the_whole_measurement_is_bounded(stubs: dict[str, Stub]) -> None:
    stubs["green"].delays["/"] = 0.1
    start = time.perf_counter()
    result = measure(urls(stubs), ["/"], rounds=100, max_duration_s=0.5)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0  # the limit and one round's path (0.1 s); 10 s unbounded
    assert not result.complete
    assert 0 < result.rounds_done < 5
    assert result.duration_s == pytest.approx(elapsed, abs=0.05)
    # cut between rounds: both targets have the same number of samples
    assert len(result.targets["blue"].samples_ms["/"]) == len(
        result.targets["green"].samples_ms["/"]
    )
    assert f"{result.rounds_done}/100 rounds" in result.table()


def test_a_slow_api_is_a_regression_and_over_budget(stubs: dict[str, Stub]) -> None:
    """The broken release: every API request of the new colour 300 ms slower."""
    for path in ("/api/v1/aptos/", "/api/v1/health"):
        stubs["green"].delays[path] = 0.3
    paths = ["/", "/aptos", "/api/v1/aptos/", "/api/v1/health", "/health"]
    result = measure(urls(stubs), paths, rounds=3)
    new, live = result.targets["green"], result.targets["blue"]
    problem = regression(new, live, margin_ms=100)
    assert problem is not None
    assert problem.startswith("p99 of green is ")
    assert "(margin 100 ms)" in problem
    assert f"green p50 {new.overall.p50_ms:.1f} ms, p99 {new.overall.p99_ms:.1f} ms" in problem
    assert f"blue p50 {live.overall.p50_ms:.1f} ms, p99 {live.overall.p99_ms:.1f} ms" in problem
    growth = problem.split("largest p50 growth: ")[1]
    assert growth.split(" ")[0] in ("/api/v1/aptos/", "/api/v1/health")
    # all paths together fit the budget (the API is 2 paths in 5): each path's p50 does not
    problems = budget_problems(new, p50_budget_ms=250, p99_budget_ms=500)
    assert [p.split(" ")[0] for p in problems] == ["/api/v1/aptos/", "/api/v1/health"]
    assert all("p50 3" in p for p in problems)
    # the same release against itself: no regression, and the live colour is within budget
    assert regression(live, live, margin_ms=100) is None
    assert budget_problems(live, 250, 500) == []


def test_regression_is_judged_on_p99_with_the_margin() -> None:
    def target(name: str, ms: list[float]) -> TargetLatency:
        return TargetLatency(name, f"https://{name}", {"/": ms})

    live = target("live", [10.0] * 98 + [50.0] * 2)  # p99 of 100: the second slowest
    assert regression(target("new", [10.0] * 99 + [500.0]), live, 100) is None  # one is no p99
    assert regression(target("new", [10.0] * 98 + [150.0] * 2), live, 100) is None  # 100: ok
    problem = regression(target("new", [10.0] * 98 + [150.5] * 2), live, 100)
    assert problem is not None
    assert problem.startswith("p99 of new is 100.5 ms above live's (margin 100 ms)")
    empty = TargetLatency("new", "https://new", {"/": []}, [RequestError("/", "HTTP 502")])
    assert regression(empty, live, 100) == (
        "nothing to compare: new (https://new) answered no request successfully (/: HTTP 502)"
    )


def test_pooled_runs_judge_more_requests(stubs: dict[str, Stub]) -> None:
    runs = [measure(urls(stubs), ["/", "/broken"], rounds=2) for _ in range(2)]
    both = pool(runs)
    assert (both.rounds, both.rounds_done, both.complete) == (4, 4, True)
    assert both.duration_s == pytest.approx(runs[0].duration_s + runs[1].duration_s)
    blue = both.targets["blue"]
    assert (
        blue.samples_ms["/"]
        == runs[0].targets["blue"].samples_ms["/"] + (runs[1].targets["blue"].samples_ms["/"])
    )
    assert len(blue.errors) == 6  # 1 warm-up and 2 timed per run


# -- the suite, against stub colours ------------------------------------------------------------

CONFTEST = """
import pytest
from pytest_bluegreen.core.config import GateSettings, StackConfig
from pytest_bluegreen.checks.probe import Target

URLS = {urls!r}
PATHS = ("/", "/aptos", "/api/v1/aptos/", "/api/v1/health", "/health")


class StubConfig(StackConfig):
    def preview_url(self, colour):
        return URLS[colour]


@pytest.fixture(scope="session")
def bluegreen_config(tmp_path_factory):
    return StubConfig(
        project_dir=tmp_path_factory.mktemp("p"),
        gates=GateSettings(latency_rounds={rounds}, latency_margin_ms={margin}),
    )


@pytest.fixture
def bluegreen_target():
    return Target(URLS["green"], "green", None, None, PATHS)


@pytest.fixture
def bluegreen_idle_url():
    return URLS["green"]


@pytest.fixture
def bluegreen_live_colour():
    return {live!r}
"""


def run_suite(
    pytester: pytest.Pytester,
    stubs: dict[str, Stub],
    live: str | None,
    rounds: int = 10,
    margin_ms: float = 100.0,
    suite: Path = SUITE,
) -> pytest.RunResult:
    pytester.makeconftest(
        CONFTEST.format(urls=urls(stubs), rounds=rounds, live=live, margin=margin_ms)
    )
    pytester.makepyfile(test_latency=suite.read_text(encoding="utf-8"))
    return pytester.runpytest(
        "-p", "no:cacheprovider", "-rA", "-s", "-W", "ignore::pytest.PytestAssertRewriteWarning"
    )


@pytest.mark.parametrize("suite", [SUITE, REFERENCE_SUITE], ids=["packaged", "reference"])
def test_the_suite_passes_a_good_release(
    pytester: pytest.Pytester, stubs: dict[str, Stub], suite: Path
) -> None:
    result = run_suite(pytester, stubs, live="blue", suite=suite)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["latency (ms):", "path*green (new) p50*blue (live) p99"])
    assert "confirmation run" not in result.stdout.str()


def test_the_suite_catches_a_slow_api(pytester: pytest.Pytester, stubs: dict[str, Stub]) -> None:
    for path in ("/api/v1/aptos/", "/api/v1/health"):
        stubs["green"].delays[path] = 0.3
    result = run_suite(pytester, stubs, live="blue", rounds=3)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "latency, confirmation run (ms):",
            "green (new) at http*is over the latency budget*: /api/v1/*p50 3*"
            "(over two runs, 30 requests); slowest paths: /api/v1/*",
            "p99 of green (new) is *ms above blue (live)'s (margin 100 ms)*"
            "largest p50 growth: /api/v1/*(over two runs, 30 requests); setting latency_margin_ms",
        ]
    )


def test_the_suite_does_not_fail_on_one_spike(
    pytester: pytest.Pytester, stubs: dict[str, Stub]
) -> None:
    """A single slow answer in the first run is the p99 of 50 requests, not of 100."""
    stubs["green"].spikes[10] = 1.0  # a timed request of the first run
    result = run_suite(pytester, stubs, live="blue", margin_ms=300)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["latency, confirmation run (ms):", "*problems did not hold over both runs together"]
    )


def test_the_suite_on_a_first_deploy(pytester: pytest.Pytester, stubs: dict[str, Stub]) -> None:
    result = run_suite(pytester, stubs, live=None)
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*not applicable: no live colour (a first deploy)*"])
    assert "(live)" not in result.stdout.str()


def test_the_suite_reports_errors(pytester: pytest.Pytester, stubs: dict[str, Stub]) -> None:
    stubs["green"].statuses["/aptos"] = 502
    result = run_suite(pytester, stubs, live="blue")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "11 requests to green (new) at http*failed while measuring latency: "
            "/aptos: HTTP 502 (warm-up); /aptos: HTTP 502; *",
            "green (new) at http*over the latency budget*: /aptos: no successful request to time*",
        ]
    )
