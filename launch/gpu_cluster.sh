#!/usr/bin/env bash
# Start a launch/ experiment on a multi-node GPU cluster: SLURM, or plain machines (see docs/clusters.md).
set -euo pipefail

# ---- settings (override from the environment) -------------------------------------------------------
SCRIPT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -f "$SCRIPT_ROOT/launch/__init__.py" ]]; then DEFAULT_REPO="$SCRIPT_ROOT"
else DEFAULT_REPO="${SLURM_SUBMIT_DIR:-$PWD}"; fi   # sbatch runs a spooled copy of this script
REPO="${REPO:-$DEFAULT_REPO}"                       # the repository checkout (shared or identical on all nodes)
PYTHON="${PYTHON:-}"                                # default: REPO/.venv/bin/python if present, else python3
GPUS_PER_NODE="${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}"
COORDINATOR_PORT="${COORDINATOR_PORT:-$(( 61440 + ${SLURM_JOB_ID:-0} % 4096 ))}"  # per job, as JAX picks it
SRUN_ARGS="${SRUN_ARGS:-}"                          # extra srun options, e.g. "--cpu-bind=none"
DRY_RUN="${DRY_RUN:-0}"                             # 1 = print the command instead of running it
# JAX preallocates 75% of GPU memory by default; long-context steps need more (docs/clusters.md)
XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"

usage() {
  cat <<EOF
Usage:
  launch/gpu_cluster.sh slurm [--per-node|--per-gpu] NAME [ARGS...]
  launch/gpu_cluster.sh multinode NAME [ARGS...]

Runs 'python -m launch.NAME ARGS...' as one JAX job over several GPU nodes, with
ENTROPY_JAX_DISTRIBUTED=1 so entropy_jax.runtime.initialize() calls jax.distributed.initialize(); the mesh
flags (--data / --fsdp / --tensor, one may be -1) then describe one mesh over all GPUs.

slurm      inside an allocation (sbatch or salloc): srun starts the processes; the coordinator is
           the allocation's first node, port \$COORDINATOR_PORT.
           --per-node (default): one process per node that sees all its GPUS_PER_NODE GPUs.
           --per-gpu: one process per GPU (JAX gives each process GPU SLURM_LOCALID).
multinode  no scheduler: run the same command on every machine yourself (ssh, pdsh, ...), with
           JAX_COORDINATOR_ADDRESS=host0:port, JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=0..N-1 set.

Settings (environment): REPO [$REPO], PYTHON, GPUS_PER_NODE [$GPUS_PER_NODE],
COORDINATOR_PORT, SRUN_ARGS, DRY_RUN=1 (only print the command),
XLA_PYTHON_CLIENT_MEM_FRACTION [$XLA_PYTHON_CLIENT_MEM_FRACTION] (share of each GPU JAX preallocates;
JAX's own default is 0.75).

Meshes: serve (generate, scoring) with --tensor within a node and --data across nodes; train
(finetune) with --fsdp. fsdp for generate re-gathers every weight on every decoded token.

Examples:
  sbatch -N 2 --gpus-per-node=8 launch/gpu_cluster.sh slurm generate --tensor 8 --data -1 --out gen.json
  salloc -N 4 --gpus-per-node=4 launch/gpu_cluster.sh slurm --per-gpu generate --data 4 --tensor -1
  sbatch -N 2 --gpus-per-node=8 launch/gpu_cluster.sh slurm finetune --fsdp -1
  # on host0 and host1 (process ids 0 and 1):
  JAX_COORDINATOR_ADDRESS=host0:61440 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \\
    launch/gpu_cluster.sh multinode generate --tensor 8 --data -1
EOF
}

if [[ $# -eq 0 ]]; then usage >&2; exit 2; fi
if [[ "$1" == "-h" || "$1" == "--help" ]]; then usage; exit 0; fi

MODE="$1"; shift
PER="node"
if [[ "$MODE" == "slurm" && $# -gt 0 && ( "$1" == "--per-node" || "$1" == "--per-gpu" ) ]]; then
  PER="${1#--per-}"; shift
fi
if [[ $# -eq 0 ]]; then usage >&2; exit 2; fi
NAME="$1"; shift
if [[ ! "$NAME" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || ! grep -qs "__main__" "$REPO/launch/$NAME.py"; then
  echo "gpu_cluster.sh: launch/$NAME.py is not an experiment under REPO=$REPO" >&2; exit 2
fi
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON="python3"; fi
fi
cd "$REPO"
export ENTROPY_JAX_DISTRIBUTED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION

run() {
  if [[ "$DRY_RUN" == "1" ]]; then printf '%q ' "$@"; echo; else exec "$@"; fi
}

case "$MODE" in
  slurm)
    if [[ -z "${SLURM_JOB_ID:-}" ]]; then
      echo "gpu_cluster.sh slurm: not inside a SLURM allocation (use sbatch or salloc)" >&2; exit 2
    fi
    NODES="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
    HEAD="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
    export JAX_COORDINATOR_ADDRESS="$HEAD:$COORDINATOR_PORT"
    unset JAX_NUM_PROCESSES JAX_PROCESS_ID   # JAX reads both from SLURM_NTASKS / SLURM_PROCID
    if [[ "$PER" == "node" ]]; then
      TASKS_PER_NODE=1
      # without this JAX would give a SLURM task only GPU SLURM_LOCALID, i.e. one GPU per node
      JAX_LOCAL_DEVICE_IDS="$(seq -s, 0 $(( GPUS_PER_NODE - 1 )))"
      export JAX_LOCAL_DEVICE_IDS
    else
      TASKS_PER_NODE="$GPUS_PER_NODE"
      unset JAX_LOCAL_DEVICE_IDS
    fi
    # shellcheck disable=SC2086  # SRUN_ARGS is a list of options
    run srun --nodes="$NODES" --ntasks=$(( NODES * TASKS_PER_NODE )) --ntasks-per-node="$TASKS_PER_NODE" \
      --kill-on-bad-exit=1 $SRUN_ARGS "$PYTHON" -m "launch.$NAME" "$@"
    ;;
  multinode)
    for v in JAX_COORDINATOR_ADDRESS JAX_NUM_PROCESSES JAX_PROCESS_ID; do
      if [[ -z "${!v:-}" ]]; then
        echo "gpu_cluster.sh multinode: set $v (see launch/gpu_cluster.sh -h)" >&2; exit 2
      fi
    done
    run "$PYTHON" -m "launch.$NAME" "$@"
    ;;
  *)
    echo "gpu_cluster.sh: unknown mode '$MODE' (slurm or multinode)" >&2; usage >&2; exit 2
    ;;
esac
