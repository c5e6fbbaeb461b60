#!/usr/bin/env bash
# Installs PyTorch 2.x into its own virtual environment (default /opt/torch2) for the
# benchmark peer (bench/torch_block_step.py --attention sdpa). System packages are untouched:
# Debian's /usr/bin/python3 keeps its python3-torch 1.13. Only the default PyPI registry is
# used (plain `pip install torch`; on Linux x86-64 that wheel may pull nvidia-* CUDA packages,
# a few GB, which are unused on CPU but harmless).
# Idempotent: if the venv already imports torch >= 2, nothing is installed.
# Prints the path of the venv's python on its last line.
# Usage: scripts/install_torch2.sh [VENV_DIR]   (or TORCH2_VENV=DIR)
set -euo pipefail
VENV="${1:-${TORCH2_VENV:-/opt/torch2}}"
PY="$VENV/bin/python"
have_torch2() {
  [ -x "$PY" ] && "$PY" - <<'PYEOF' >/dev/null 2>&1
import torch, sys
sys.exit(0 if int(torch.__version__.split('.')[0]) >= 2 else 1)
PYEOF
}
if have_torch2; then
  echo "torch $("$PY" -c 'import torch;print(torch.__version__)') already in $VENV" >&2
else
  if [ ! -x "$PY" ]; then
    /usr/bin/python3 -m venv "$VENV"
  fi
  "$PY" -m pip install --upgrade --quiet pip >&2 || true
  start=$(date +%s)
  "$PY" -m pip install torch numpy >&2
  end=$(date +%s)
  echo "installed torch $("$PY" -c 'import torch;print(torch.__version__)') into $VENV in $((end-start)) s ($(du -sh "$VENV" | cut -f1))" >&2
fi
echo "$PY"
