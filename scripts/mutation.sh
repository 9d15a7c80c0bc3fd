#!/usr/bin/env bash
# Mutation testing with mutmut 3, one module at a time, each against the tests that cover it (a development tool:
# never run by CI, which would need hours). docs/development.md explains it and records the results.
#
#   bash scripts/mutation.sh                      # every module in MODULES below, in order
#   bash scripts/mutation.sh data/idx core/metrics  # just these (paths under hf_fmnist/, without .py)
#
# Each module runs in its own scratch copy of the working tree (MUTATION_DIR, default /tmp/hf_fmnist-mutation), so
# mutmut's `mutants/` folder and its [mutmut] section never touch the repository. mutmut first runs the module's
# tests once to learn which test calls which function, then runs, for each mutant, only the tests that call the
# mutated function. Results: the summary line per module printed at the end, and for a survivor
# `cd $MUTATION_DIR/<module> && mutmut show <name>` (`mutmut results` lists them).
# Environment: MUTATION_JOBS (default 1: the machine is shared), MUTATION_NICE (default 15).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
mutmut=$(dirname "$python")/mutmut
[ -x "$mutmut" ] || { echo "mutmut is missing: pip install -e \".[dev,mutation]\" installs it (the mutation extra)" >&2; exit 2; }
work=${MUTATION_DIR:-/tmp/hf_fmnist-mutation}
jobs=${MUTATION_JOBS:-1}
niceness=${MUTATION_NICE:-15}

# module (under hf_fmnist/, without .py) -> the test files that cover it (pytest node ids work too). The module's
# own doctests run with them (its path is added below). Fast tests first: mutmut stops a mutant at its first failure.
declare -A TESTS=(
    [data/idx]="tests/test_idx.py tests/test_properties.py tests/test_raw.py"
    [data/png]="tests/test_png.py tests/test_properties.py tests/test_hostile_inputs.py"
    [core/metrics]="tests/test_metrics.py tests/test_properties.py"
    [core/loader]="tests/test_properties.py tests/test_validation_split.py tests/test_train.py"
    [training/batchnorm]="tests/test_distributed.py"
    [training/optim]="tests/test_train.py tests/test_recipes.py"
    [core/card]="tests/test_cards.py tests/test_publishing.py tests/test_hub.py"
    [hub/push]="tests/test_hub.py tests/test_gates.py"
    [hub/files]="tests/test_publishing.py tests/test_gates.py"
    [data/export]="tests/test_builder.py tests/test_cards.py"
    [inference/evaluate]="tests/test_gates.py tests/test_train.py"
    [inference/onnx]="tests/test_onnx.py tests/test_hostile_checkpoints.py"
    [training/checkpoint]="tests/test_hostile_checkpoints.py tests/test_disk_full.py tests/test_clusters.py"
    [training/loop]="tests/test_train.py tests/test_gates.py"
)
# Smallest and purest first; the training modules run tests that train (minutes per mutant).
MODULES=(data/idx data/png core/metrics core/loader training/batchnorm training/optim core/card hub/files
    hub/push data/export inference/evaluate inference/onnx training/checkpoint training/loop)

[ $# -gt 0 ] && MODULES=("$@")
for module in "${MODULES[@]}"; do
    [ -n "${TESTS[$module]:-}" ] || { echo "no tests listed for $module in scripts/mutation.sh" >&2; exit 2; }
    [ -f "$repo/hf_fmnist/$module.py" ] || { echo "no module hf_fmnist/$module.py" >&2; exit 2; }
done

summaries=()
for module in "${MODULES[@]}"; do
    dir=$work/${module//\//.}
    rm -rf "$dir" && mkdir -p "$dir"
    # the working tree as git sees it (tracked and new files, nothing ignored: no .venv, no caches)
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$dir"
    cat >>"$dir/setup.cfg" <<EOF

[mutmut]
source_paths = hf_fmnist
only_mutate = hf_fmnist/$module.py
pytest_add_cli_args_test_selection =
$(for t in ${TESTS[$module]} "hf_fmnist/$module.py"; do echo "    $t"; done)
# one argument a line; no cache: the scratch copy is thrown away
pytest_add_cli_args =
    -p
    no:cacheprovider
# torch is not fork-safe once the suite has run in the parent process
process_isolation = forkserver
EOF
    start=$(date +%s)
    # The tests' subprocesses (the CLI, torchrun) import the mutated package too. mutants/ must exist before Python
    # starts: a PYTHONPATH entry that is missing then is cached as "nothing here", and the editable install's
    # original package would be tested instead (mutmut then finds no test covering any mutant).
    mkdir "$dir/mutants"
    (cd "$dir" && PYTHONPATH="$dir/mutants${PYTHONPATH:+:$PYTHONPATH}" nice -n "$niceness" "$mutmut" run \
        --max-children "$jobs" >"$dir/mutmut.log" 2>&1) || echo "mutmut run failed for $module: see $dir/mutmut.log"
    seconds=$(($(date +%s) - start))
    (cd "$dir" && "$mutmut" export-cicd-stats >/dev/null 2>&1) || true
    stats=$dir/mutants/mutmut-cicd-stats.json
    if [ -f "$stats" ]; then
        line=$("$python" - "$stats" "$module" "$seconds" <<'EOF'
import json, sys
s, module, seconds = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
other = s["suspicious"] + s["skipped"] + s["segfault"] + s["no_tests"]
print(f"hf_fmnist/{module}.py: {s['total']} mutants, {s['killed']} killed, {s['survived']} survived, "
      f"{s['timeout']} timed out, {other} other (no tests/suspicious/skipped); {seconds // 60} min {seconds % 60} s")
EOF
        )
    else
        line="hf_fmnist/$module.py: no results (see $dir/mutmut.log)"
    fi
    echo "$line"
    summaries+=("$line")
    (cd "$dir" && "$mutmut" results 2>/dev/null | grep -v ': killed$' >"$dir/survivors.txt") || true
done
echo
echo "mutation testing, $(date -u +%Y-%m-%d) (survivors: <dir>/survivors.txt, mutmut show <name> in <dir>):"
printf '%s\n' "${summaries[@]}"
