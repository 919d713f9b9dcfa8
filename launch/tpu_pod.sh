#!/usr/bin/env bash
# A Cloud TPU VM pod: every worker runs the same jaxkd command, one process per worker.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b launch/tpu_pod.sh --setup      # clone + install only
#   TPU_NAME=my-v4-32 ZONE=us-central2-b launch/tpu_pod.sh [--setup] CONFIG WORKDIR \
#       [--config.field=value ...]
#
# CONFIG is a path inside the repository (e.g. configs/kd_imagenet.py). WORKDIR must be the
# same directory on every worker, on a file system they share (Filestore/NFS, or a gcsfuse
# mount): orbax writes one checkpoint from all processes and every process restores from it.
# config.data_dir may be shared or local to each worker (then prepared on every worker).
#
# Environment:
#   TPU_NAME, ZONE       the TPU VM (required); PROJECT optional (else gcloud's default)
#   REPO_DIR             checkout on the workers, absolute or relative to the home directory
#                        (default: jaxkd)
#   REPO_URL, GIT_REF    what --setup clones and checks out: a git URL and a branch, tag or
#                        commit (default: this checkout's `origin` remote and current branch)
#   WORKER_PYTHON        interpreter --setup builds REPO_DIR/.venv with; jax needs
#                        Python >= 3.11 (default: python3.11)
#   COORDINATOR_PORT     port of the JAX coordinator on worker 0 (default: 8476)
#
# Multi-host start-up: the command sets JAX_COORDINATOR_ADDRESS to worker 0's internal IP,
# which makes jaxkd call jax.distributed.initialize(); JAX reads this worker's process id
# and the process count from the TPU VM metadata server.
set -euo pipefail

usage="usage: TPU_NAME=... ZONE=... $0 [--setup] [CONFIG WORKDIR [--config.field=value ...]]"
setup=false
if [[ "${1:-}" == "--setup" ]]; then
  setup=true
  shift
fi
if [[ -z "${TPU_NAME:-}" || -z "${ZONE:-}" ]] || { ! ${setup} && [[ $# -lt 2 ]]; } \
    || [[ $# -eq 1 ]]; then
  echo "${usage}" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo_dir="${REPO_DIR:-jaxkd}"
port="${COORDINATOR_PORT:-8476}"
location=(--zone="${ZONE}")
if [[ -n "${PROJECT:-}" ]]; then
  location+=(--project="${PROJECT}")
fi

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "${TPU_NAME}" "${location[@]}" --worker=all \
      --command="$1"
}

quoted_dir="$(printf '%q' "${repo_dir}")"
if ${setup}; then
  repo_url="${REPO_URL:-$(git -C "${repo}" remote get-url origin 2>/dev/null || true)}"
  git_ref="${GIT_REF:-$(git -C "${repo}" rev-parse --abbrev-ref HEAD)}"
  if [[ -z "${repo_url}" ]]; then
    echo "--setup needs REPO_URL (this checkout has no 'origin' remote)" >&2
    exit 2
  fi
  jax_version="$(sed -n 's/^jax==//p' "${repo}/requirements.txt")"
  quoted_url="$(printf '%q' "${repo_url}")"
  on_all_workers "set -e
    [ -d ${quoted_dir}/.git ] || git clone --quiet ${quoted_url} ${quoted_dir}
    cd ${quoted_dir}
    git fetch --quiet ${quoted_url} $(printf '%q' "${git_ref}")
    git checkout --quiet FETCH_HEAD
    [ -x .venv/bin/python ] || $(printf '%q' "${WORKER_PYTHON:-python3.11}") -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -r requirements.txt 'jax[tpu]==${jax_version}'"
fi

if [[ $# -eq 0 ]]; then
  exit 0
fi
config="$1"
workdir="$2"
shift 2

coordinator_ip="$(gcloud compute tpus tpu-vm describe "${TPU_NAME}" "${location[@]}" \
    --format='value(networkEndpoints[0].ipAddress)')"
train_args=(--config="${config}" --workdir="${workdir}" "$@")
on_all_workers "cd ${quoted_dir} && \
    JAX_COORDINATOR_ADDRESS=${coordinator_ip}:${port} .venv/bin/python -m jaxkd.main \
    $(printf '%q ' "${train_args[@]}")"
