"""Safety from the outside: the CLI in a child process, faults from the loopback server,
signals at many moments. Every run ends with its own message and exit code, never a crash,
and what it leaves resumes to exactly the source."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from .conftest import make_collection
from .loopback import Fault, LoopbackServer

ROOT = Path(__file__).resolve().parent.parent
POINTS = 3000


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded store with `docs` of 3,000 points, built once and copied per test."""
    path = tmp_path_factory.mktemp("source") / "q"
    client = QdrantClient(path=str(path))
    make_collection(client, "docs", n=POINTS)
    client.close()
    return path


@pytest.fixture
def store(big_source: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "q"
    shutil.copytree(big_source, copy)
    return copy


def migrate_args(store: Path, server: LoopbackServer, *extra: str) -> list[str]:
    return ["migrate", "--qdrant-path", str(store), "--collection", "docs",
            "--provider", "openai-compatible", "--base-url", server.url, "--model", "m",
            "--page-size", "128", "--batch-size", "32", "--state-dir",
            str(store.parent / "state"), "-q", *extra]


def child(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    return subprocess.Popen([sys.executable, "-m", "migrator", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def ended(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    """Wait for a child; one that hangs is killed (and fails the test)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the child hung for {timeout} s: {err[-2000:]}")
    return process.returncode, out, err


def run_cli(args: list[str]) -> tuple[int, str, str]:
    return ended(child(args))


def finish_and_count(store: Path, server: LoopbackServer) -> dict[str, Any]:
    """Run the same migration to the end; its JSON result."""
    code, out, err = run_cli(migrate_args(store, server, "--no-verify", "--json"))
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)["collections"][0]
    assert result["target_count"] == POINTS
    return result


def error(message: str, code: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code}}


FATAL = {
    "401 mid-run": ([Fault(401, error("Incorrect API key provided", "invalid_api_key"))],
                    "HTTP 401"),
    "insufficient_quota": ([Fault(429, error("You exceeded your current quota",
                                             "insufficient_quota"))], "quota"),
    "invalid answers": ([Fault(200, raw=b"{not json")] * 8, "not JSON"),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FATAL), ids=list(FATAL))
def test_a_fatal_provider_error_mid_backfill_ends_with_its_message(
        store: Path, fault: str) -> None:
    """Issue 11.5: the store was closed while the writer thread was inside `upsert`, and
    local mode segfaulted (exit 139) instead of printing the provider's error."""
    faults, said = FATAL[fault]
    with LoopbackServer(dims=8) as server:
        server.faults.extend([Fault(0)] * 12 + faults)
        code, _, err = run_cli(migrate_args(store, server))
        assert code == 1, err
        assert said in err and "Traceback" not in err
        assert "run the same command again" in err
        finish_and_count(store, server)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "after"), [
    (signal.SIGINT, 130, 1), (signal.SIGINT, 130, 9), (signal.SIGINT, 130, 30),
    (signal.SIGTERM, 143, 4), (signal.SIGTERM, 143, 17)])
def test_first_signal_stops_gracefully_and_the_rerun_resumes(
        store: Path, signum: int, code: int, after: int) -> None:
    """Issue 11.6: no new requests, in-flight pages written and checkpointed, exit
    130/143 with one line saying how to resume; the same command then completes."""
    with LoopbackServer(dims=8, latency=0.03) as server:
        process = child(migrate_args(store, server, "--no-verify"))
        deadline = time.monotonic() + 60
        while server.requests < after and time.monotonic() < deadline:
            time.sleep(0.002)
        sent_before = server.requests
        process.send_signal(signum)
        returncode, _, err = ended(process, 120)
        assert returncode == code, err
        assert "Traceback" not in err
        assert "Stopped by " + signal.Signals(signum).name in err
        assert "again to resume" in err
        # only what was in flight (4 requests) may still have been sent
        assert server.requests - sent_before <= 4 + 1
        result = finish_and_count(store, server)
        if "checkpointed" in err:  # stopped in the backfill: its pages were kept
            written = int(err.split(" of ")[0].split()[-1].replace(",", ""))
            assert result["resumed_written"] == written


@pytest.mark.slow
@pytest.mark.parametrize("gap", [0.0, 0.05])
def test_second_ctrl_c_aborts_at_once_without_corrupting(store: Path, gap: float) -> None:
    with LoopbackServer(dims=8, latency=0.2) as server:
        process = child(migrate_args(store, server, "--no-verify"))
        deadline = time.monotonic() + 60
        while server.requests < 6 and time.monotonic() < deadline:
            time.sleep(0.002)
        process.send_signal(signal.SIGINT)
        time.sleep(gap)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        returncode, _, err = ended(process, 60)
        assert time.monotonic() - started < 5
        assert returncode == 130, err
        assert "Traceback" not in err and "Stopped by SIGINT" in err
        finish_and_count(store, server)
