"""`mmlens run --skips` then `mmlens link` on the built-in benchmark with the shipped model, and
the mistakes a user can make on the way."""

import re
import shutil
import subprocess

import pandas as pd
import pytest

from mmlens.benchmarks.shapes import write_shapes_benchmark
from mmlens.cli import main


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_shapes_benchmark(tmp_path_factory.mktemp("bench") / "shapes", n_scenes=4)


def _run(bench, out, *extra):
    args = ["run", "shapes", "--data", str(bench), "--out", str(out), "--limit", "6"]
    return main([*args, "--max-new-tokens", "24", "--batch-size", "3", "--quiet", *extra])


def test_skip_runs_then_the_link_report(bench, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(bench, run, "--skips", "paper", "--skip", "late=6,7", "--visual-attention") == 0
    printed = capsys.readouterr().out
    assert "data-set stages: critical layer" in printed
    skips = sorted(p.name for p in (run / "skips").iterdir())
    assert "late" in skips and set(skips) - {"late"} <= {"skip.1", "skip.2", "skip.3"}
    late = pd.read_parquet(run / "skips" / "late" / "tokens.parquet")
    assert sorted(late.layer.unique()) == [0, 1, 2, 3, 4, 5, 6]  # blocks 6, 7 never ran
    again = _run(bench, run, "--skips", "paper", "--skip", "late=6,7", "--visual-attention")
    assert again == 0  # resumes: all done
    assert "6 already done" in capsys.readouterr().out

    out = tmp_path / "link"
    assert main(["link", str(run), "--out", str(out), "--n-resamples", "200"]) == 0
    printed = capsys.readouterr().out
    assert "P(mutation | hallucinated)" in printed and "chair" in printed
    mentions = pd.read_csv(out / "mentions.csv")
    assert set(mentions.object) <= {"circle", "square", "triangle", "diamond", "cross"}
    mitigation = pd.read_csv(out / "mitigation.csv")
    assert mitigation.setting.tolist()[0] == "original" and "late" in mitigation.setting.tolist()
    assert {"chair", "cover", "similarity", "rate_change"} <= set(mitigation.columns)
    separation = pd.read_csv(out / "separation.csv", keep_default_na=False)
    assert separation.signal.tolist() == ["mutation", "svar", "dola_jsd", "dola_contrast",
                                          "deco_conf"]  # fmt: skip
    assert (separation.note == "").all() and "Which signal separates" in printed
    signals = pd.read_csv(out / "signals.csv")
    assert len(signals) == len(mentions) and signals.svar.notna().all()
    curves = pd.read_csv(out / "visual_attention.csv")
    assert set(curves.group) == {"hallucinated", "correct", "difference"}
    page = (out / "report.html").read_text()
    assert "Skipping layers as mitigation" in page and "Benchmark metrics" in page
    assert "Which layer signal separates" in page and "Visual attention by layer" in page
    assert 'href="#item-' in page and "http" not in page.replace("http-equiv", "")
    # tables and legends for people: no Python tuples, <NA>, NaN or repeated legend labels
    assert not re.search(r"\(\d+,\)|&lt;NA&gt;|>NaN<|>None<", page), "raw values in the report"
    assert re.search(r"<b>Truth</b>: \w+", page)  # words, not a JSON list
    _opens_in_chromium(out / "report.html", tmp_path)


def _opens_in_chromium(report, tmp_path):
    """The link report loads offline in headless Chromium without console errors, every figure
    decoded, and a screenshot is written for a person to look at."""
    chromium = shutil.which("chromium")
    assert chromium, "Install Debian's chromium (`apt-get install chromium`); .ci/run does."
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
             "--window-size=1200,4000"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "Error" in line]
    assert not errors, errors
    assert dom.stdout.count("<img") >= 2 and "The link, with 95 % bootstrap intervals" in dom.stdout
    shot = report.parent / "screenshot.png"
    subprocess.run([*flags, f"--screenshot={shot}", report.as_uri()], capture_output=True,
                   timeout=120)  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_mistakes_get_one_clear_line(bench, tmp_path, capsys):
    run = tmp_path / "run"
    assert _run(bench, run, "--skip-layers", "1", "--skips", "paper") == 2
    assert "one or the other" in capsys.readouterr().err
    assert _run(bench, run, "--skip-layers", "99") == 2
    assert "blocks 0..7" in capsys.readouterr().err
    assert not run.exists()  # refused before anything was written
    assert _run(bench, tmp_path / "r2", "--skip", "late=six") == 2
    assert "like 1,2,5-7" in capsys.readouterr().err
    assert _run(bench, tmp_path / "r2", "--skip-layers", "3-") == 2
    assert "like 1,2,5-7" in capsys.readouterr().err
    assert _run(bench, tmp_path / "r2", "--skip", "late=6,99") == 2  # before the original runs
    assert "blocks 0..7" in capsys.readouterr().err and not (tmp_path / "r2").exists()
    assert _run(bench, tmp_path / "r3", "--skip", "../up=1") == 2
    assert "name the set" in capsys.readouterr().err
    assert main(["link", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
    done = tmp_path / "done"
    assert _run(bench, done) == 0
    bad = tmp_path / "objects.json"
    bad.write_text("{not json")
    assert main(["link", str(done), "--out", str(tmp_path / "o"), "--objects", str(bad)]) == 2
    assert "cannot read it as JSON" in capsys.readouterr().err
    (tmp_path / "o").mkdir()
    assert main(["link", str(done), "--out", str(tmp_path / "o")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_link_that_cannot_be_computed_says_why(bench, tmp_path, capsys):
    done = tmp_path / "done"
    assert _run(bench, done) == 0
    words = tmp_path / "words.json"
    words.write_text('["zebra"]')  # no caption names one: no object words at all
    out = tmp_path / "link"
    args = ["link", str(done), "--out", str(out), "--objects", str(words), "--n-resamples", "200"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "n/a" in printed and "NaN" not in printed
    assert "P(mutation | hallucinated) - P(mutation | correct): n/a, no object words" in printed
    summary = pd.read_csv(out / "summary.csv")
    assert summary.note.fillna("").str.startswith("no object words in the run").any()
    page = (out / "report.html").read_text()
    assert "no object words in the run" in page and ">n/a<" in page
    assert not (out / "visual_attention.csv").exists()  # the run did not record it
    separation = pd.read_csv(out / "separation.csv")
    assert (separation.note == "no object words in the run").all()
