"""`mmlens report`: a complete self-contained page, safe failure modes, and a real browser."""

import re
import shutil
import subprocess

import pytest

from mmlens import Trace
from mmlens.cli import main
from mmlens.report import ReportSettings

SECTIONS = (
    "Generated text, by critical layer",
    "Hallucinated words",
    "Stage summary",
    "Token probabilities across layers",
    "Rival words",
    "Jensen-Shannon divergence",
    "Stages",
    "Feature trajectories",
    "Where the image goes",
    "Attention on the image, per generated token and layer",
    "Attention knockout: where the image reaches the first token",
    "in the image tokens, layer by layer",
    "Skip experiments",
    "Per-layer top-k (interactive)",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    assert (
        main(["report", "--out", str(out), "--rivals", "green,red", "--max-new-tokens", "40"]) == 0
    )
    return out


def test_report_has_every_section_and_the_trace(report):
    page = (report / "report.html").read_text()
    for title in SECTIONS:
        assert title in page, title
    # image + 5 figures + the hallucinated word + visual attention, knockout, image-token lens
    assert page.count('<img class="figure"') == 10
    assert "&#x27;triangle&#x27; in the image tokens" in page  # the hallucinated word's strip
    assert "unpkg.com" not in page and not re.search(r"<script[^>]+src=", page)
    trace = Trace.load(report / "trace")
    assert trace.rival_words[:2] == ["green", "red"] and trace.features is not None
    assert trace.image_attention is not None
    # the bundled scene (a green circle, a red square) breaks the model's green-triangle prior
    assert "triangle" in trace.text and "circle" not in trace.text
    assert "In the image: circle, square." in page
    assert "&#x27;triangle&#x27; (step" in page and "is not in the image" in page
    shown = min(trace.n_steps, 20)
    assert f"The first {shown} of the {trace.n_steps} generated tokens" in page or (
        trace.n_steps <= 20 and f"All {trace.n_steps} generated tokens" in page
    )


def test_critical_layer_legend_covers_every_layer_once():
    from mmlens.report.sections import STAGE_COLOURS, critical_layer_legend

    for last in (8, 32, 3):
        legend = critical_layer_legend(last)
        labels = re.findall(r">([0-9]+(?:-[0-9]+)?)</span>", legend)
        covered = []
        for label in labels:
            first, _, end = label.partition("-")
            covered += list(range(int(first), int(end or first) + 1))
        assert covered == list(range(last + 1)), (last, labels)  # no bin skipped or repeated
        assert len(labels) == min(last + 1, len(STAGE_COLOURS))
        assert "color:white" in legend and "no critical layer" in legend


def test_existing_folder_needs_force(report, capsys):
    assert main(["report", "--out", str(report), "--max-new-tokens", "2"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err


def test_force_replaces(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    args = ["report", "--out", str(out), "--force", "--max-new-tokens", "3", "--lens", "paper"]
    assert main(args) == 0
    assert (out / "report.html").is_file() and not (out / "stale.txt").exists()
    page = (out / "report.html").read_text()
    assert "paper mode of Fig. 4" in page and Trace.load(out / "trace").settings["lens"] == "paper"


def test_interrupt_leaves_no_report(tmp_path, monkeypatch, capsys):
    import mmlens.report.build as build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build.skip, "skip_plan", interrupted)
    out = tmp_path / "r"
    assert main(["report", "--out", str(out), "--max-new-tokens", "3"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.png"], "Image file not found"),
        (["--model", "no/such-model"], "never downloads"),
        (["--truth", "dog"], "give both"),  # truth without the object words
    ],
)
def test_user_errors(tmp_path, capsys, args, message):
    code = main(["report", *args, "--out", str(tmp_path / "r")])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_not_an_image(tmp_path, capsys):
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello")
    assert main(["report", str(fake), "--out", str(tmp_path / "r")]) == 2
    assert "not a readable image" in capsys.readouterr().err


def test_settings_validate():
    with pytest.raises(ValueError, match="max_new_tokens"):
        ReportSettings(max_new_tokens=0)


@pytest.mark.slow
def test_report_in_headless_chromium(report, tmp_path):
    """Open the report offline in Chromium: no console errors, every view rendered."""
    chromium = shutil.which("chromium")
    assert chromium, "Install Debian's chromium (`apt-get install chromium`); .ci/run does."
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=8000",
        "--window-size=1300,5000",
    ]
    url = (report / "report.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    errors = [
        line
        for line in console
        if re.search(r"Uncaught|Error|Failed", line)
        and "WebGL" not in line
        and "GPU stall" not in line
    ]
    assert not errors, errors
    # circuitsvis rendered into its divs (they are empty before its script runs)
    rendered = re.findall(r'<div id="cv-[0-9a-f]+">(.*?)</div>', dom.stdout, flags=re.S)
    assert rendered and all(piece.strip() for piece in rendered)
    assert dom.stdout.count("<img") == 10
    # the interactive views sit close together (circuitsvis pads each by 350 px otherwise)
    probe = report / "probe.html"
    measure = (
        "<script>setTimeout(() => document.body.setAttribute('data-height', "
        "document.getElementById('interactive').getBoundingClientRect().height), 1000)</script>"
    )
    probe.write_text((report / "report.html").read_text().replace("</body>", measure + "</body>"))
    measured = subprocess.run(
        [*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
    )
    height = float(re.search(r'data-height="([0-9.]+)"', measured.stdout).group(1))
    assert 0 < height < 1100, height
    shot = report / "screenshot.png"
    subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
