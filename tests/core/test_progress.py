"""Progress in logs is a few plain lines, not hundreds of carriage-return updates."""

import io
import subprocess
import sys

from mmlens.progress import PlainProgress, progress_bar


def test_plain_lines_at_start_each_quarter_and_end():
    stream = io.StringIO()
    bar = PlainProgress(total=100, desc="run", unit="item", stream=stream)
    for _ in range(100):
        bar.update()
    bar.set_postfix_str("writing")
    bar.close()
    bar.close()  # once only
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and "\r" not in stream.getvalue()
    assert lines[0] == "run: started (100 item)"
    assert [line.split(" (")[0] for line in lines[1:4]] == [
        "run: 25/100 item", "run: 50/100 item", "run: 75/100 item",
    ]  # fmt: skip
    assert lines[4].startswith("run: done, 100/100 item in ") and lines[4].endswith("[writing]")


def test_wrapping_an_iterable_and_big_steps():
    stream = io.StringIO()
    assert list(PlainProgress(range(8), desc="images", stream=stream)) == list(range(8))
    assert stream.getvalue().count("\n") == 5
    stream = io.StringIO()
    bar = PlainProgress(total=10, stream=stream)
    bar.update(10)  # one step past every milestone: each is still said once
    assert stream.getvalue().count("(") == 4  # started (...), 25 %, 50 %, 75 %


def test_a_command_in_a_pipe_logs_lines_not_a_bar(tmp_path):
    """Through a pipe (as under CI or nohup) a whole run prints a handful of lines."""
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmlens",
            "run",
            "shapes",
            "--out",
            str(out),
            "--limit",
            "8",
            "--max-new-tokens",
            "3",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    assert "run (rank 0): started (8 item)" in done.stderr
    assert "run (rank 0): done, 8/8 item in" in done.stderr
    assert sum("run (rank 0)" in line for line in done.stderr.splitlines()) == 5


def test_disabled_is_silent(capsys):
    with progress_bar(total=3, desc="x", disable=True) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
