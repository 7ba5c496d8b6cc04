#!/usr/bin/env bash
# Instructions per operation under callgrind, and RAM bytes per entry, for tickcache and its
# peers on the workload of benches/ops.rs.
#
#   benches/callgrind.sh                    # every (operation, implementation) pair
#   benches/callgrind.sh get_hit:tickcache  # only the pairs given
#   benches/callgrind.sh --profile get_hit:tickcache
#                                           # one run with --dump-instr=yes, then callgrind_annotate
#
# Each pair runs twice in its own process, with N and 2N operations (TICKCACHE_OPS, default
# 100000); instructions per operation are (I(2N) - I(N)) / N, so building and filling the
# cache cancel out. Each pair is measured REPEAT times (default 5) and the median is kept.
# Results go to <target>/callgrind/{instructions,ram}.tsv and a markdown table on stdout.
# Honours CARGO_TARGET_DIR. JOBS (default 2) runs pairs in parallel; the counts do not
# depend on machine load.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${TICKCACHE_OPS:-100000}
JOBS=${JOBS:-2}
REPEAT=${REPEAT:-5}
OPS=(get_hit get_miss set_overwrite set_evicting)
IMPLS=(tickcache tickcache_cull1 tickcache_bytes lru schnellru quick_cache heapless moka hashmap)

target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out="$target/callgrind"
mkdir -p "$out"

bin=$(cargo bench --no-run -p tickcache-benches --bench ops --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "ops":
        print(m["executable"])
')
[ -x "$bin" ] || { echo "no bench executable built" >&2; exit 1; }

if [ "${1:-}" = "--profile" ]; then
    spec=${2:?usage: $0 --profile <op>:<impl>}
    file="$out/profile.${spec/:/.}.out"
    TICKCACHE_CALLGRIND=$spec TICKCACHE_OPS=$N valgrind --tool=callgrind --dump-instr=yes \
        --callgrind-out-file="$file" "$bin" 2>/dev/null
    echo "profile: $file" >&2
    callgrind_annotate --inclusive=yes "$file" | head -60
    exit 0
fi

# Total instructions of one process: `run <spec> <ops> <repeat>`.
run() {
    local file="$out/$1.$2.$3.out"
    file=${file/:/.}
    TICKCACHE_CALLGRIND=$1 TICKCACHE_OPS=$2 valgrind --tool=callgrind \
        --callgrind-out-file="$file" "$bin" 2>/dev/null
    awk '/^summary:/ { print $2 }' "$file"
}

# One pair: prints `op impl per-op-of-each-repeat median`. The peers hash with random
# seeds, so their counts move a little from process to process; the median of REPEAT
# differences is reported.
pair() {
    local op=${1%%:*} impl=${1#*:} a b r runs=()
    for r in $(seq "$REPEAT"); do
        a=$(run "$1" "$N" "$r")
        b=$(run "$1" $((2 * N)) "$r")
        runs+=("$(python3 -c "print(f'{($b - $a) / $N:.1f}')")")
    done
    printf '%s\t%s\t%s\t%s\n' "$op" "$impl" "$(IFS=,; echo "${runs[*]}")" \
        "$(printf '%s\n' "${runs[@]}" | sort -g | sed -n "$(((REPEAT + 1) / 2))p")"
}
export -f run pair
export out bin N REPEAT

if [ $# -gt 0 ]; then
    specs=("$@")
else
    specs=()
    for op in "${OPS[@]}"; do
        for impl in "${IMPLS[@]}"; do
            # tickcache_cull1 differs from tickcache only when culling.
            if { [ "$impl" != tickcache_cull1 ] || [ "$op" = set_evicting ]; } &&
                { [ "$impl" != tickcache_bytes ] || [ "$op" = get_hit ] || [ "$op" = set_overwrite ]; }; then
                specs+=("$op:$impl")
            fi
        done
    done
fi

{
    printf 'op\timpl\tir_per_op_runs\tir_per_op\n'
    printf '%s\n' "${specs[@]}" | xargs -P "$JOBS" -I{} bash -c 'pair "$@"' _ {} | sort
} >"$out/instructions.tsv"

TICKCACHE_CALLGRIND=ram "$bin" >"$out/ram.tsv" 2>/dev/null

python3 - "$out/instructions.tsv" "$out/ram.tsv" "$N" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
ram = {r["impl"]: r["bytes_per_entry"] for r in csv.DictReader(open(sys.argv[2]), delimiter="\t")}
impls = ["tickcache", "tickcache_cull1", "tickcache_bytes", "lru", "schnellru", "quick_cache", "heapless", "moka", "hashmap"]
impls = [i for i in impls if any(r["impl"] == i for r in rows)]
ops = []
for r in rows:
    if r["op"] not in ops:
        ops.append(r["op"])
order = ["get_hit", "get_miss", "set_overwrite", "set_evicting"]
ops.sort(key=lambda o: order.index(o) if o in order else len(order))
cell = {(r["op"], r["impl"]): r["ir_per_op"] for r in rows}
print(f"Instructions per operation (callgrind, median of (I(2N) - I(N)) / N, N = {sys.argv[3]})\n")
print("| op | " + " | ".join(impls) + " |")
print("|---|" + "---:|" * len(impls))
for op in ops:
    print(f"| {op} | " + " | ".join(cell.get((op, i), "") for i in impls) + " |")
print("| RAM bytes/entry | " + " | ".join(ram.get(i, "") for i in impls) + " |")
EOF
