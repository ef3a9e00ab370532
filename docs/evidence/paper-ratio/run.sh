#!/bin/bash
# Evidence for issues 19, 21 and 22: the synthetic benchmark at the paper's ratio (aux 23x the target),
# 3 seeds: Table 3 (strategies: target only, straight combination, SCN, DCJT, SSPA-JT), Table 5
# (modules), Table 8 (aux_ratio), Table 9 (direct_merge). Code: a snapshot of main (so edits in the
# worktree do not leak into running trials), run with its own venv and cache.
export PYTHONPATH=/work/evidence/code RAY_DISABLE_USAGE_STATS=1 SSPA_CACHE_DIR=/work/evidence/cache
S="/work/wt-seam/.venv/bin/python -m sspa_ray.cli.main"
cd /work/evidence
stamp() { echo "$(date -u +%FT%TZ) $*" >> timings.txt; }
run() { local name=$1; shift; local t0=$(date +%s); $S "$@" > "$name.log" 2>&1; local rc=$?; stamp "$name: $(( $(date +%s) - t0 )) s, rc=$rc: sspa-ray $*"; }
stamp "start at $(git -C code rev-parse --short HEAD 2>/dev/null) (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for preset in ${PRESETS:-strategies modules aux_ratio direct_merge}; do
  run "$preset" ablate --preset "$preset" --target synthetic --seeds 3 --out "$preset" $( [ -d "$preset" ] && echo --resume )
done
stamp "done (load: $(cut -d' ' -f1-3 /proc/loadavg))"
