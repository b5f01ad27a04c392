#!/usr/bin/env bash
# The tests: the Rust suite, then the Python package's (built into a virtual environment under
# target/, with maturin, pytest and NumPy from PyPI). DFA_SKIP_PYTHON=1 runs the Rust suite only.
#   DFA_DATA=../shared/data bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
if [ "${DFA_SKIP_PYTHON:-0}" = 1 ]; then
  exit 0
fi
venv=target/py-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# the venv's programs first: maturin's build backend (1.16 on) runs `maturin` by name
export PATH="$PWD/$venv/bin:$PATH"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.5,<2" "pytest>=7" "numpy>=1.21"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation ./python
DFA_BIN="$PWD/target/release/dfa" "$venv/bin/python" -m pytest -q python/tests
