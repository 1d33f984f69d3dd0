#!/usr/bin/env bash
# One paper table as a grid of DVC experiments: queue its rows (Hydra sweep syntax), run them with N queue workers
# at once, wait, then print the table built from every row's MLflow run.
#
#   scripts/table.sh iddpm -j 2                    # iDDPM: {linear, cosine} × {L_simple, L_hybrid, L_vlb}
#   scripts/table.sh ddpm -j 2 -S profile=tiny     # DDPM Table 2's six rows at the tiny scale
#   scripts/table.sh iddpm --print                 # only print the dvc commands
# DDIM Tables 1–2 and FID against NFE need no grid: one experiment's ddim_fid and solver_fid matrices hold them
# (`dvc exp run`, then reports/paper_tables.md).
#
# Extra -S key=value arguments go to every queued experiment (e.g. -S profile=tiny). The rows (DDPM_ROWS and
# IDDPM_ROWS in src/ddpm/evaluation/paper_tables.py) are validated before anything is queued. The table is also
# written to tables/<table>.md (not tracked). Meanwhile: `dvc queue status`, `dvc queue logs <name>`,
# `dvc exp show`, the MLflow UI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
usage="usage: scripts/table.sh ddpm|iddpm [-j N] [--print] [-S key=value ...]"
table=${1:?$usage}; shift
jobs=1; dry=0; extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -j|--jobs) jobs=${2:?$usage}; shift 2 ;;
    --print) dry=1; shift ;;
    -S) extra+=(-S "${2:?$usage}"); shift 2 ;;
    *) echo "error: scripts/table.sh: unknown argument '$1'; $usage" >&2; exit 1 ;;
  esac
done
bash scripts/ensure-venv.sh >&2
export PATH="$PWD/.venv/bin:$PATH"
commands=$(ddpm table "$table" --commands "${extra[@]}")  # one shell-quoted command per line
threads=${OMP_NUM_THREADS:-$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))}
quoted=$( (( ${#extra[@]} )) && printf '%q ' "${extra[@]}" || true)
final="ddpm table $table $quoted--out tables/$table.md"
if [[ $dry == 1 ]]; then  # a script to paste: the queue, the workers, then the table once they are done
  echo "source .venv/bin/activate"
  echo "$commands"
  echo "OMP_NUM_THREADS=$threads dvc queue start -j $jobs"
  echo "# wait until \`dvc queue status\` shows every experiment done, then:"
  echo "$final"
  exit 0
fi
names=()
while read -r line; do
  echo "+ $line"
  eval "cmd=($line)"
  out=$("${cmd[@]}") || { echo "$out" >&2; exit 1; }
  echo "$out"
  while read -r name; do names+=("$name"); done < <(sed -n "s/^Queued experiment '\(.*\)' for future.*/\1/p" <<<"$out")
done <<<"$commands"
# Workers share the CPU cores: without a thread budget each one's PyTorch takes them all (two workers on two cores:
# 0.9 training steps/s each on the tiny profile, against 5.5 with one thread each). A budget you set is kept.
export OMP_NUM_THREADS=$threads
echo "+ OMP_NUM_THREADS=$OMP_NUM_THREADS dvc queue start -j $jobs"
dvc queue start -j "$jobs"
echo "waiting for ${#names[@]} experiment(s): ${names[*]}"
status() { dvc queue status 2>/dev/null | awk -v want=" ${names[*]} " 'index(want, " " $2 " ") {print $2, $NF}'; }
while status | grep -qE " (Queued|Running)$"; do sleep 15; done
failed=$(status | awk '$2 != "Success" {print $1}')
if [[ -n $failed ]]; then
  echo "error: scripts/table.sh: experiment(s) failed: $failed; see: dvc queue logs <name>" >&2
  exit 1
fi
echo "+ $final"
ddpm table "$table" "${extra[@]}" --out "tables/$table.md"
