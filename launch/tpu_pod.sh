#!/usr/bin/env bash
# Start a launch/ experiment on every host of a Cloud TPU pod slice (see docs/clusters.md).
set -euo pipefail

# ---- settings (override from the environment) -------------------------------------------------------
TPU_NAME="${TPU_NAME:-}"                   # the TPU VM / pod slice, as in `gcloud compute tpus tpu-vm list`
ZONE="${ZONE:-}"                           # its zone, e.g. us-central2-b
PROJECT="${PROJECT:-}"                     # gcloud project; empty = gcloud's configured default
REMOTE_DIR="${REMOTE_DIR:-entropy_jax}"    # the repository checkout on every host (relative to $HOME)
PYTHON="${PYTHON:-.venv/bin/python}"       # interpreter on every host, relative to REMOTE_DIR or absolute
SETUP="${SETUP:-}"                         # optional command run first on every host, e.g. "git pull -q"
DRY_RUN="${DRY_RUN:-0}"                    # 1 = print the gcloud command instead of running it

usage() {
  cat <<EOF
Usage: launch/tpu_pod.sh NAME [ARGS...]

Runs 'python -m launch.NAME ARGS...' on every host of the TPU pod slice \$TPU_NAME at once
(gcloud compute tpus tpu-vm ssh --worker=all). Every host runs the same command with
ENTROPY_JAX_DISTRIBUTED=1, so entropy_jax.runtime.initialize() calls jax.distributed.initialize() and the
mesh flags (--data / --fsdp / --tensor, one may be -1) describe one mesh over all the slice's chips.

Settings (environment): TPU_NAME (required), ZONE (required), PROJECT, REMOTE_DIR [$REMOTE_DIR],
PYTHON [$PYTHON], SETUP, DRY_RUN=1 (only print the command).

Examples:
  TPU_NAME=my-v4-32 ZONE=us-central2-b launch/tpu_pod.sh generate --fsdp -1 --prompt "Why is the sky blue?"
  TPU_NAME=my-v5e-16 ZONE=us-west4-a launch/tpu_pod.sh generate --data 2 --tensor -1 --dtype bfloat16 --out gen.json

Each host needs the repository at ~/REMOTE_DIR with its virtual environment and jax[tpu] installed
(see docs/clusters.md). Output files are written on every host's disk; the launchers write from process 0.
EOF
}

if [[ $# -eq 0 ]]; then usage >&2; exit 2; fi
if [[ "$1" == "-h" || "$1" == "--help" ]]; then usage; exit 0; fi

NAME="$1"; shift
if [[ ! "$NAME" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
  echo "tpu_pod.sh: '$NAME' is not a launch/ module name (e.g. generate, nmf_rank)" >&2; exit 2
fi
LOCAL_LAUNCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! grep -qs '__main__' "$LOCAL_LAUNCH/$NAME.py"; then
  echo "tpu_pod.sh: launch/$NAME.py is not an experiment in this checkout; available:" \
       "$(cd "$LOCAL_LAUNCH" && grep -l '__main__' -- *.py | sed 's/\.py$//' | tr '\n' ' ')" >&2
  exit 2
fi
if [[ -z "$TPU_NAME" || -z "$ZONE" ]]; then
  echo "tpu_pod.sh: set TPU_NAME and ZONE (see launch/tpu_pod.sh -h)" >&2; exit 2
fi

# The remote command, every argument quoted so prompts with spaces and quotes survive ssh.
REMOTE="cd $(printf '%q' "$REMOTE_DIR")"
if [[ -n "$SETUP" ]]; then REMOTE+=" && $SETUP"; fi
REMOTE+=" && ENTROPY_JAX_DISTRIBUTED=1 $(printf '%q' "$PYTHON") -m launch.$NAME"
if [[ $# -gt 0 ]]; then REMOTE+=" $(printf '%q ' "$@")"; fi

GCLOUD=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$REMOTE")
if [[ -n "$PROJECT" ]]; then GCLOUD+=(--project="$PROJECT"); fi

if [[ "$DRY_RUN" == "1" ]]; then
  printf '%q ' "${GCLOUD[@]}"; echo
else
  exec "${GCLOUD[@]}"
fi
