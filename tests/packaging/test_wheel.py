"""The built wheel installs in a fresh venv, maps adapters/ and analyses/ into mmlens, and holds
every subpackage and its data."""

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_installs_and_imports_in_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            dist,
            ROOT,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("mmlens-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Dependencies come from this environment (no downloads); mmlens itself only from the wheel.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", wheel],
        check=True,
        capture_output=True,
    )
    probe = (
        "import mmlens, mmlens.adapters, mmlens.analyses, mmlens.zoo.tiny;"
        "import mmlens.report, mmlens.cli, mmlens.benchmarks;"
        "from mmlens.benchmarks.chair import CocoVocabulary;"
        "assert len(CocoVocabulary.default().classes) == 80;"
        "from mmlens.adapters import LlavaAdapter;"
        "from mmlens.registry import registered_adapters;"
        "assert LlavaAdapter in registered_adapters();"
        "import importlib.util as u;"
        "assert u.find_spec('analyses') is None and u.find_spec('adapters') is None;"
        "from mmlens.zoo import shipped_models;"
        "shapes = shipped_models()['mmlens/shapes'];"
        "assert (shapes / 'model.safetensors').is_file() and (shapes / 'tokenizer.json').is_file();"
        "assert str(shapes).startswith(mmlens.__file__.rsplit('/', 2)[0]);"
        "from mmlens.zoo.priors.assemble import TRAINED_FILE;"
        "assert TRAINED_FILE.is_file();"
        "assert str(TRAINED_FILE).startswith(mmlens.__file__.rsplit('/', 2)[0]);"
        "import mmlens.zoo.priors.train, mmlens.benchmarks.priors;"
        "print(mmlens.__file__, mmlens.adapters.__file__)"
    )
    out = subprocess.run(
        [python, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    assert out.count(site) == 2, out
    assert "/adapters/__init__.py" not in out.split()[0]
    assert out.split()[1].endswith("mmlens/adapters/__init__.py")
