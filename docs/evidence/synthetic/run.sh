#!/bin/bash
# Evidence for issue 12: every preset on the synthetic target, 3 seeds, with the new defaults.
# Code: a snapshot of branch issue12 in /work/evidence-12/code (so edits to the worktree do not
# leak into running trials), run with the worktree's virtual environment.
export PYTHONPATH=/work/evidence-12/code RAY_DISABLE_USAGE_STATS=1 SSPA_CACHE_DIR=/work/evidence-12/cache
S="/work/wt-issue12/.venv/bin/python -m sspa_ray.cli.main"
cd /work/evidence-12
stamp() { echo "$(date -u +%FT%TZ) $*" >> timings.txt; }
run() { local name=$1; shift; local t0=$(date +%s); $S "$@" > "$name.log" 2>&1; local rc=$?; stamp "$name: $(( $(date +%s) - t0 )) s, rc=$rc: sspa-ray $*"; }
stamp "start (load: $(cut -d' ' -f1-3 /proc/loadavg))"
run demo-first ablate --target synthetic --out demo-first
run demo-cached ablate --target synthetic --out demo-cached
for preset in modules strategies experts aux_ratio direct_merge beta; do
  run "$preset" ablate --preset "$preset" --target synthetic --seeds 3 --out "$preset"
done
stamp "done (load: $(cut -d' ' -f1-3 /proc/loadavg))"
