"""`scripts/dev.sh` skips pip when the set-up is current (the editable install needs no reinstall
for code changes), so a second `dev.sh demo` starts at once."""

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _venv(tmp_path: Path, stamp: str) -> Path:
    """A venv stand-in: its python is this test's (which has torch and mmlens) but refuses to run
    pip, so a wrong decision fails fast instead of installing anything."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "-m pip" ] && {{ echo "pip was run" >&2; exit 97; }}\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    (venv / ".mmlens-setup").write_text(stamp + "\n")
    return venv


def test_an_unchanged_setup_is_not_reinstalled(tmp_path):
    inputs = (ROOT / "pyproject.toml").read_bytes() + (ROOT / "scripts" / "dev.sh").read_bytes()
    venv = _venv(tmp_path, hashlib.sha256(inputs).hexdigest())
    done = subprocess.run(
        ["bash", "scripts/dev.sh", "setup"],
        cwd=ROOT,
        env={"MMLENS_VENV": str(venv), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "set-up: up to date" in done.stdout


def test_a_changed_pyproject_is_not_called_up_to_date(tmp_path):
    """(Checked without running pip: the stamp of another pyproject.toml does not match.)"""
    venv = _venv(tmp_path, "0" * 64)
    script = (ROOT / "scripts" / "dev.sh").read_text()
    check = script.split("setup() {", 1)[1].split("  if [ ! -x", 1)[0]  # the stamp test alone
    done = subprocess.run(
        ["bash", "-c", f"VENV={venv}; PY={venv}/bin/python; f() {{ {check} echo stale; }}; f"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "stale", done.stdout
