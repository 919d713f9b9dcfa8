#!/usr/bin/env bash
# One SLURM task of a jaxkd job (see slurm.sbatch): trains with the GPUs SLURM gave it.
#
#   srun launch/slurm_task.sh CONFIG WORKDIR [--config.field=value ...]
#
# JAX's SLURM detection would pick local device number SLURM_LOCALID, which does not exist
# when SLURM exposes only this task's own GPU (--gpus-per-task=1). JAX_LOCAL_DEVICE_IDS
# therefore names every GPU in CUDA_VISIBLE_DEVICES: one with a GPU per task, all of the
# node's with a task per node.
#
# PYTHON picks the interpreter (default: the repository's .venv if present, else python3).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--config.field=value ...]" >&2
  exit 2
fi
config="$1"
workdir="$2"
shift 2

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
  IFS=, read -r -a visible <<< "${CUDA_VISIBLE_DEVICES}"
  local_ids=()
  for ((i = 0; i < ${#visible[@]}; i++)); do
    local_ids+=("${i}")
  done
  export JAX_LOCAL_DEVICE_IDS="$(IFS=,; echo "${local_ids[*]}")"
fi
default_python=python3
if [[ -x "${repo}/.venv/bin/python" ]]; then
  default_python="${repo}/.venv/bin/python"
fi
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"

exec "${PYTHON:-${default_python}}" -m jaxkd.main --config="${config}" --workdir="${workdir}" "$@"
