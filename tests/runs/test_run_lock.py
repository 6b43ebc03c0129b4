"""One run owns a run folder at a time: a second run (a plain one or a torchrun launch) is refused
with one line naming the holder and exit code 2; a holder killed with SIGKILL leaves no stuck lock;
what stopped or doubled runs left behind is cleaned and repaired by the next run. The slow tests
use real `python -m mmlens run` processes."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
from _support import n_parts, wait_for_parts

from mmlens.benchmarks import read_shapes, write_shapes_benchmark
from mmlens.cli import main
from mmlens.errors import ConfigError, RunFolderBusyError
from mmlens.runs import Shard
from mmlens.runs.locking import LOCK_NAME, FolderLock, hold_run_folder, read_holder
from mmlens.runs.parts import RECORD

N_ITEMS = 24  # --limit: 12 parts of 2 items
# one thread in every process, so that runs compare exactly; no hub
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_shapes_benchmark(tmp_path_factory.mktemp("bench") / "shapes", n_scenes=6)


def _cli(bench, out):
    return [
        sys.executable, "-m", "mmlens", "run", "shapes", "--data", str(bench), "--out", str(out),
        "--max-new-tokens", "4", "--quiet", "--limit", str(N_ITEMS), "--flush-every", "2",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def clean(bench, tmp_path_factory):
    """The same command run once, alone, to the end: what every test's folder must equal."""
    out = tmp_path_factory.mktemp("clean") / "run"
    subprocess.run(_cli(bench, out), check=True, capture_output=True, timeout=600, env=ENV)
    return out


def _wait_for_holder(out, process):
    """The pid the lock file names once `process` (or its launch's rank 0) holds the folder."""
    deadline = time.time() + 300
    while not read_holder(out):
        assert process.poll() is None, "the run ended before it held the folder"
        assert time.time() < deadline, "the run did not lock the folder in time"
        time.sleep(0.05)
    return read_holder(out)["pid"]


def _assert_equals_clean(out, clean, bench):
    items = pd.read_parquet(out / "items.parquet")
    expected = [item.id for item in read_shapes(bench).items[:N_ITEMS]]
    assert list(items.id) == expected  # every item once, in order
    columns = ["order", "id", "prompt", "truth", "output", "n_tokens", "status", "error"]
    pd.testing.assert_frame_equal(items[columns], pd.read_parquet(clean / "items.parquet")[columns])
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "tokens.parquet"), pd.read_parquet(clean / "tokens.parquet")
    )


def test_a_held_folder_is_refused_naming_its_holder(tmp_path):
    out = tmp_path / "run"
    lock = FolderLock.acquire(out, "mmlens run shapes --out run", world=2)
    with pytest.raises(RunFolderBusyError) as caught:
        FolderLock.acquire(out)  # a second open file: refused even within one process
    message = str(caught.value)
    pid = os.getpid()
    assert f"pid {pid} (rank 0 of 2 processes) on {socket.gethostname()}, started " in message
    assert "running `mmlens run shapes --out run`" in message
    assert f"Wait for it to finish, or stop it (kill {pid})" in message
    (out / "run.json").write_text("{}")  # the holder wrote something
    lock.release()
    assert read_holder(out) == {}  # released: the record is cleared, the file stays
    FolderLock.acquire(out).release()
    assert (out / LOCK_NAME).is_file()


def test_the_cli_refuses_a_held_folder_in_one_line_before_loading(bench, tmp_path, capsys):
    out = tmp_path / "run"
    with FolderLock.acquire(out, "the other run"):
        assert main(_cli(bench, out)[3:]) == 2
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    err = capsys.readouterr().err
    assert err.startswith("mmlens: error: ") and err.count("\n") == 1
    assert f"pid {os.getpid()}" in err and "running `the other run`" in err
    assert not out.exists()  # the holder made the folder and wrote nothing: it is gone again


def test_a_folder_that_is_not_a_run_gets_no_lock_file(bench, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(_cli(bench, busy)[3:]) == 2
    assert "not an mmlens run" in capsys.readouterr().err
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_a_failed_preparation_releases_the_folder(tmp_path):
    def prepare(folder):
        raise ConfigError("mixed runs")

    fresh = tmp_path / "new" / "run"
    with pytest.raises(ConfigError, match="mixed runs"), hold_run_folder(fresh, prepare=prepare):
        pass
    assert not (tmp_path / "new").exists()  # made for the lock, then nothing written: removed
    with hold_run_folder(tmp_path, Shard()) as lock:
        assert lock is not None and lock.held
    assert Shard().gather("alone") == ["alone"]


@pytest.mark.slow
def test_a_second_run_is_refused_while_the_first_holds_the_folder(bench, clean, tmp_path):
    """The first run is paused (SIGSTOP) as soon as it holds the folder, so that it surely still
    holds it when the second arrives, however slow the machine; then it goes on and finishes."""
    out = tmp_path / "run"
    first = subprocess.Popen(
        _cli(bench, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    try:
        assert _wait_for_holder(out, first) == first.pid
        os.kill(first.pid, signal.SIGSTOP)
        written = n_parts(out)
        started = time.monotonic()
        second = subprocess.run(
            _cli(bench, out), capture_output=True, text=True, timeout=300, env=ENV
        )
        took = time.monotonic() - started
        assert n_parts(out) == written  # the second wrote nothing
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err.decode()[-3000:]
    assert second.returncode == 2 and "Traceback" not in second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("mmlens: error:")]
    assert len(errors) == 1, second.stderr
    assert f"another run: pid {first.pid} on {socket.gethostname()}" in errors[0]
    assert "running `mmlens run shapes --data" in errors[0] and f"(kill {first.pid})" in errors[0]
    assert f"--limit {N_ITEMS}" in errors[0]  # the holder's command as it was given
    assert "Loading weights" not in second.stderr  # refused before the model loads
    print(f"the second run was refused in {took:.1f} s")
    _assert_equals_clean(out, clean, bench)


@pytest.mark.slow
def test_a_killed_holder_leaves_no_stuck_lock(bench, clean, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(
        _cli(bench, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    wait_for_parts(out, 2, first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert 2 <= n_parts(out) < N_ITEMS // 2, "the run should be killed part-way"
    assert read_holder(out)["pid"] == first.pid  # its record stays; the kernel dropped its lock
    half = out / "parts" / ".partial-000-killed"  # as a kill during a write leaves
    half.mkdir(exist_ok=True)
    (half / "items.parquet").write_bytes(b"half written")
    done = subprocess.run(_cli(bench, out), capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "half-written file(s) a stopped run left" in done.stdout
    assert "already done" in done.stdout
    assert not list((out / "parts").glob(".*")) and read_holder(out) == {}
    _assert_equals_clean(out, clean, bench)


@pytest.mark.slow
def test_duplicate_parts_are_repaired_by_the_next_run(bench, clean, tmp_path):
    """The folder the old unlocked behaviour left after two runs at once: parts without part.json,
    some items in two of them, and no merged tables (the merge refused)."""
    out = tmp_path / "run"
    shutil.copytree(clean, out)
    for name in ("items.parquet", "tokens.parquet", "summary.json", "responses.json"):
        (out / name).unlink()
    for part in (out / "parts").iterdir():
        (part / RECORD).unlink()
    shutil.copytree(out / "parts" / "000-000003", out / "parts" / "000-000012")
    shutil.copytree(out / "parts" / "000-000004", out / "parts" / "000-000013")
    done = subprocess.run(_cli(bench, out), capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    repaired = [line for line in done.stdout.splitlines() if line.startswith("repaired")]
    twice = [item.id for item in read_shapes(bench).items[6:10]]  # parts 3 and 4: items 6-9
    assert len(repaired) == 1 and f"4 item(s) {twice} were written twice" in repaired[0]
    assert f"{N_ITEMS} items: {N_ITEMS} already done" in done.stdout
    _assert_equals_clean(out, clean, bench)
    pd.testing.assert_frame_equal(  # the very parts of the clean run: timings too
        pd.read_parquet(out / "items.parquet"), pd.read_parquet(clean / "items.parquet")
    )


@pytest.mark.slow
def test_a_torchrun_launch_over_a_held_folder_is_refused_on_every_rank(bench, tmp_path):
    """Only rank 0 locks; the others hear of the refusal from it, so none waits for ever."""
    out = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    launcher += ["--master-port", str(30500 + os.getpid() % 1000)]
    with FolderLock.acquire(out, "the other run"):
        done = subprocess.run(
            [*launcher, "-m", "mmlens", *_cli(bench, out)[3:]],
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
        )
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    assert done.returncode != 0
    refusal = f"is being written by another run: pid {os.getpid()}"
    assert done.stderr.count(refusal) == 2, done.stderr[-3000:]  # one line from each rank


@pytest.mark.slow
def test_a_plain_run_over_a_torchrun_launch_is_refused(bench, tmp_path):
    """The launch's rank 0 (named by the lock file) is paused as soon as it holds the folder, so
    that the launch surely still holds it; then it goes on, and its result is complete."""
    out = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    launcher += ["--master-port", str(31500 + os.getpid() % 1000)]
    launch = subprocess.Popen(
        [*launcher, "-m", "mmlens", *_cli(bench, out)[3:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    rank0 = _wait_for_holder(out, launch)
    os.kill(rank0, signal.SIGSTOP)
    try:
        single = subprocess.run(
            _cli(bench, out), capture_output=True, text=True, timeout=300, env=ENV
        )
    finally:
        os.kill(rank0, signal.SIGCONT)
    _, err = launch.communicate(timeout=600)
    assert launch.returncode == 0, err.decode()[-3000:]
    assert single.returncode == 2 and "Traceback" not in single.stderr
    assert f"another run: pid {rank0} (rank 0 of 2 processes)" in single.stderr
    items = pd.read_parquet(out / "items.parquet")
    assert list(items.id) == [item.id for item in read_shapes(bench).items[:N_ITEMS]]
    assert sorted(items.shard.unique()) == [0, 1]
