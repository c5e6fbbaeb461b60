#!/usr/bin/env bash
# Installs DeepSpeed into the PyTorch 2.x venv (default /opt/torch2, made by
# scripts/install_torch2.sh) for the sequence-parallel benchmark peer bench/torch_sp_peer.py,
# which uses only deepspeed.sequence.layer.DistributedAttention (DeepSpeed-Ulysses) on
# torch.distributed with the gloo backend on CPU. DS_BUILD_OPS=0: no compiled ops at install.
# On CPU, deepspeed.init_distributed() JIT-builds one small C++ op (ShareMemCommBuilder, for its
# inference all-reduce, unused by the peer) into ~/.cache/torch_extensions on first use; this
# script builds it once here, so that the first benchmark run does not spend its start on it.
# Only the default PyPI registry is used (plain `pip install deepspeed`). Nothing in seqvit
# needs DeepSpeed at run time; only the benchmark peer does.
# Idempotent: if the venv already imports deepspeed.sequence.layer, nothing is installed.
# Prints the path of the venv's python on its last line.
# Usage: scripts/install_deepspeed.sh [VENV_DIR]   (or TORCH2_VENV=DIR)
set -euo pipefail
VENV="${1:-${TORCH2_VENV:-/opt/torch2}}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "error: no python in $VENV; run scripts/install_torch2.sh first" >&2
  exit 1
fi
have_ds() {
  "$PY" -c 'import deepspeed, deepspeed.sequence.layer' >/dev/null 2>&1
}
prebuild_shm_op() {
  # best effort: the peer does not call this op, deepspeed only builds it when it initialises
  "$PY" -c 'from deepspeed.comm.torch import build_shm_op; build_shm_op()' >&2 ||
    echo "warning: deepspeed's CPU shm comm op did not build; init_distributed will retry it" >&2
}
if have_ds; then
  echo "deepspeed $("$PY" -c 'import deepspeed;print(deepspeed.__version__)' 2>/dev/null) already in $VENV" >&2
else
  start=$(date +%s)
  if ! DS_BUILD_OPS=0 "$PY" -m pip install deepspeed >&2; then
    echo "error: 'DS_BUILD_OPS=0 $PY -m pip install deepspeed' failed (see pip's message above);" \
         "bench/torch_sp_peer.py then runs Ulysses on plain torch.distributed (impl torch-ulysses)" >&2
    exit 1
  fi
  if ! err=$("$PY" -c 'import deepspeed, deepspeed.sequence.layer' 2>&1); then
    echo "error: deepspeed installed but does not import on this machine: $(echo "$err" | tail -1);" \
         "bench/torch_sp_peer.py then runs Ulysses on plain torch.distributed (impl torch-ulysses)" >&2
    exit 1
  fi
  end=$(date +%s)
  echo "installed deepspeed $("$PY" -c 'import deepspeed;print(deepspeed.__version__)' 2>/dev/null) into $VENV in $((end-start)) s" >&2
fi
prebuild_shm_op
echo "$PY"
