#!/usr/bin/env bash
# Sharded prediction on a real Slurm cluster: starts a one-node cluster on
# this machine (munged, slurmctld, slurmd, all under a temporary folder),
# submits `wsunet predict --shard auto` as a 4-task job array, cancels one
# task mid-way and requeues it, then checks that every image was predicted
# once, that the outputs equal a single-process run's byte for byte, and
# that the cluster is gone at the end (stopped by its pid files).
#
#   scripts/slurm-check.sh            # needs target/release/wsunet (cargo test --release builds it)
#
# Installs Slurm and munge with apt when they are missing (as root). Set
# WSUNET to use another binary, KEEP=1 to keep the work folder.
set -euo pipefail
cd "$(dirname "$0")/.."

wsunet=$(realpath "${WSUNET:-target/release/wsunet}")
if [[ ! -x "$wsunet" ]]; then
  echo "error: $wsunet is missing; build it first (cargo test --release --workspace, or cargo build --release)" >&2
  exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing Slurm and munge (slurm-wlm, munge)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null; }
  else
    echo "error: Slurm is not installed; install slurm-wlm and munge (as root: apt-get install slurm-wlm munge)" >&2
    exit 1
  fi
fi

work=$(mktemp -d /tmp/wsunet-slurm.XXXXXX)
mkdir -p "$work"/{state,spool,log,munge}
# munged wants its socket's folders searchable.
chmod 711 "$work" "$work/munge"
host=$(hostname -s)

pidfiles=("$work/slurmd.pid" "$work/slurmctld.pid" "$work/munge/munged.pid")
declare -A pids=()
# Whether process $1 runs (an exited daemon whose parent never reaps it,
# a zombie, does not).
alive() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat") != Z ]]; }
# The daemons' pids, read from their pid files once they are written (a
# daemon removes its file when it exits).
read_pids() {
  local pidfile
  for pidfile in "${pidfiles[@]}"; do
    [[ -s "$pidfile" && -z "${pids[$pidfile]:-}" ]] && pids[$pidfile]=$(cat "$pidfile")
  done
  return 0
}
# The cluster's daemons, stopped by their pid files whatever happens.
stop_cluster() {
  local pidfile pid
  read_pids
  for pidfile in "${pidfiles[@]}"; do
    pid=${pids[$pidfile]:-}
    [[ -n "$pid" ]] && alive "$pid" || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  done
}
finish() {
  local rc=$?
  stop_cluster
  if [[ "${KEEP:-0}" == 1 || $rc -ne 0 ]]; then
    echo "work folder kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit $rc
}
trap finish EXIT
# The logs' ends, then the error (last, where a truncated CI log shows it).
fail() {
  for f in "$work"/log/*; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
  echo "error: $*" >&2
  exit 1
}

echo "== a model and 240 images (192×192) to predict"
"$wsunet" synth --out "$work/train" --count 16 --size 96 >/dev/null
"$wsunet" synth --out "$work/data" --count 240 --size 192 --seed 7 >/dev/null
printf '{"widths": [8, 16, 16, 32, 32], "groups": 4}' > "$work/model.json"
"$wsunet" train --data "$work/train" --model-config "$work/model.json" --epochs 1 \
  --batch-size 4 --out "$work/run" >/dev/null
predict=("$wsunet" predict --model "$work/run" --input "$work/data/images" --tile 96 --tta flip --probs)
"${predict[@]}" --out "$work/reference" >/dev/null
share=$(( 240 / 4 ))

echo "== starting a one-node cluster (munged, slurmctld, slurmd) in $work"
cp /etc/munge/munge.key "$work/munge/munge.key" 2>/dev/null ||
  dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$work/munge/munge.key"
munged --force --socket="$work/munge/socket" --key-file="$work/munge/munge.key" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/log/munged.log" \
  --seed-file="$work/munge/seed"
cat > "$work/slurm.conf" <<EOF
ClusterName=wsunet-check
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
AuthInfo=socket=$work/munge/socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=check Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$work/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.2
done
sinfo -h -o %t | grep -q idle || fail "the node did not come up"
read_pids
[[ ${#pids[@]} -eq 3 ]] || fail "a daemon wrote no pid file"

echo "== sbatch --array=0-3 … wsunet predict --shard auto"
cmd="${predict[*]} --out $work/out --shard auto"
job=$(sbatch --parsable --array=0-3 --cpus-per-task=1 --output="$work/log/task-%a.out" \
  --open-mode=append --wrap "$cmd")
# Cancel task 2 once it has written a few of its images, before its last.
stems=$(ls "$work/data/images" | sed 's/\.png$//' | sort | awk 'NR % 4 == 3')
count_done() { local n=0 s; for s in $stems; do [[ -f "$work/out/$s.png" ]] && n=$((n + 1)); done; echo $n; }
for _ in $(seq 600); do
  [[ $(count_done) -ge 3 ]] && break
  sleep 0.1
done
before=$(count_done)
[[ $before -ge 3 && $before -lt $share ]] || fail "task 2 was not caught mid-way ($before of $share done)"
scancel "${job}_2"
for _ in $(seq 100); do
  squeue -h -j "${job}_2" 2>/dev/null | grep -q . || break
  sleep 0.1
done
after=$(count_done)
echo "task 2 cancelled with $after of its $share images written"
[[ $after -lt $share ]] || fail "task 2 finished before it was cancelled"
# Requeued, a task waits two minutes before it may start again; now.
scontrol requeue "${job}_2"
scontrol update JobId="${job}_2" StartTime=now

for _ in $(seq 1800); do
  squeue -h -j "$job" 2>/dev/null | grep -q . || break
  sleep 0.1
done
squeue -h -j "$job" | grep -q . && fail "the array did not finish in 3 minutes"

echo "== checking the outputs"
logs=("$work"/log/task-*.out)
grep -h "^error" "${logs[@]}" && fail "a task reported an error"
# Every image predicted once: no mask named in two tasks' lines, and every
# mask written.
dupes=$(grep -ho ' → [^:]*' "${logs[@]}" | sort | uniq -d)
[[ -z "$dupes" ]] || fail "predicted twice: $dupes"
grep -h "skipped" "${logs[@]}" | grep -q "shard 2/4" || fail "the requeued task skipped nothing"
# (diff -r also sees hidden files: a killed task's temporary file that the
# requeued task did not remove is a difference.)
differences=$(diff -rq --exclude=predict.json "$work/reference" "$work/out" 2>&1 | head -n 5) ||
  fail "the sharded outputs differ from a single-process run's: $differences"
[[ $(ls "$work/out" | wc -l) -eq $(( 240 * 2 + 1 )) ]] || fail "unexpected files in the output folder"

stop_cluster
for pidfile in "${pidfiles[@]}"; do
  if alive "${pids[$pidfile]}"; then fail "$(basename "$pidfile" .pid) is still running"; fi
done
echo "slurm check passed: 4 shards, one cancelled at $after of $share and requeued; outputs equal a single run's"
