#!/usr/bin/env bash
# The Python package, tested from Python: builds crates/wsunet-py with
# maturin into a virtual environment (target/py-venv; the Rust build shares
# the workspace's target/) and runs its pytest suite.
#
#   scripts/python-tests.sh [pytest arguments]
#
# Needs python3 with venv and the package registries (PyPI) for maturin,
# numpy, pytest and pillow.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.9,<2" numpy pytest pillow tensorboard
# maturin builds the extension (release, the `python` feature) and installs
# the package into the environment.
VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" \
  "$venv/bin/maturin" develop --release -q -m crates/wsunet-py/Cargo.toml
[ -x target/release/wsunet ] || cargo build --release
"$venv/bin/python" -m pytest -q crates/wsunet-py/tests "$@"

# The wheel, installed into a second, fresh environment, imports.
rm -rf target/wheels target/py-venv-wheel
"$venv/bin/maturin" build --release -q -m crates/wsunet-py/Cargo.toml -o target/wheels
python3 -m venv target/py-venv-wheel
target/py-venv-wheel/bin/pip install -q --disable-pip-version-check target/wheels/wsunet-*.whl
target/py-venv-wheel/bin/python -c "import wsunet; print('wheel imports: wsunet', wsunet.__version__)"
