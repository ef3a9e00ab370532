#!/bin/bash
# Evidence for issue 12, continued: every preset on the synthetic target, 3 seeds (the one-seed
# demo with a warm cache is skipped: this shared machine's load makes its timing meaningless).
export PYTHONPATH=/work/evidence-12/code RAY_DISABLE_USAGE_STATS=1 SSPA_CACHE_DIR=/work/evidence-12/cache
S="/work/wt-issue12/.venv/bin/python -m sspa_ray.cli.main"
cd /work/evidence-12
stamp() { echo "$(date -u +%FT%TZ) $*" >> timings.txt; }
run() { local name=$1; shift; local t0=$(date +%s); $S "$@" > "$name.log" 2>&1; local rc=$?; stamp "$name: $(( $(date +%s) - t0 )) s, rc=$rc: sspa-ray $*"; }
while kill -0 22038 2>/dev/null; do sleep 5; done
stamp "demo-first (started 20:50:37) ended (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for preset in modules strategies experts aux_ratio direct_merge beta; do
  run "$preset" ablate --preset "$preset" --target synthetic --seeds 3 --out "$preset"
done
stamp "done (load: $(cut -d' ' -f1-3 /proc/loadavg))"
