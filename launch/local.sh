#!/usr/bin/env bash
# One process on this machine, using all its local devices (CPU, one GPU host, one TPU VM).
#
#   launch/local.sh CONFIG WORKDIR [--config.field=value ...]
#   launch/local.sh configs/quickstart.py /tmp/jaxkd/quickstart --config.max_steps=100
#
# PYTHON picks the interpreter (default: the repository's .venv if present, else python3).
# Rerunning with the same WORKDIR resumes the run.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG WORKDIR [--config.field=value ...]" >&2
  exit 2
fi
config="$1"
workdir="$2"
shift 2

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
default_python=python3
if [[ -x "${repo}/.venv/bin/python" ]]; then
  default_python="${repo}/.venv/bin/python"
fi
export PYTHONPATH="${repo}${PYTHONPATH:+:${PYTHONPATH}}"

exec "${PYTHON:-${default_python}}" -m jaxkd.main --config="${config}" --workdir="${workdir}" "$@"
