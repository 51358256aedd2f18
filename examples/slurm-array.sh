#!/usr/bin/env bash
# Run one orbatch job as N shards with a Slurm job array:
#
#   export OPENROUTER_API_KEY=sk-or-v1-...      # sbatch passes the environment on
#   sbatch examples/slurm-array.sh jobs/demo.toml
#   # when every task is done:
#   orbatch report out.*.jsonl
#
# Shards are disjoint, complete and stable (row in shard K iff xxh3(id) mod N == K), so a task
# that is requeued or rerun resumes its own output and never pays for a row twice. Split the
# key's rate across the shards: RPS is the job's total, each task gets RPS / N.
#SBATCH --job-name=orbatch
#SBATCH --array=0-3            # N = 4 shards: indexes 0..N-1
#SBATCH --cpus-per-task=1
#SBATCH --mem=256M
#SBATCH --time=12:00:00
#SBATCH --requeue
set -euo pipefail
JOB=${1:?usage: sbatch slurm-array.sh JOB.toml}
N=${SLURM_ARRAY_TASK_COUNT:-4}
K=${SLURM_ARRAY_TASK_ID:?run me with sbatch --array}
RPS=${RPS:-20}
exec orbatch run "$JOB" --shard "$K/$N" \
  --rps "$(python3 -c "print($RPS / $N)")" \
  -o "out.$K.jsonl"
