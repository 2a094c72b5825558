# Sourced by scripts/bench: `scripts/bench concurrency` calls bench_concurrency.
#
# How many idle jails (`sleep 120`) start in 10 s, and the host memory each one costs
# (the drop in MemAvailable, and the PSS of every process it adds: clawjail's supervisor,
# the jail's init and the command), clawjail beside bwrap in the same run. Bounded: at
# most BENCH_MAX_JAILS (default 4000) jails per tool, every one ended by the script.

_bc_mem_available_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }

# Sum of PSS (KiB) of the given pids and all their descendants.
_bc_pss_tree_kib() {
  python3 - "$@" <<'PY'
import os, sys
roots = {int(p) for p in sys.argv[1:]}
children = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        continue
    children.setdefault(ppid, []).append(int(d))
todo, seen, total = list(roots), set(), 0
while todo:
    p = todo.pop()
    if p in seen:
        continue
    seen.add(p)
    todo += children.get(p, [])
    try:
        for line in open(f"/proc/{p}/smaps_rollup"):
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    except OSError:
        pass
print(total, len(seen))
PY
}

# _bc_start NAME CMD...: start jails for 10 s; prints "count pids..." in $WORK/NAME.pids
_bc_start() {
  local name=$1; shift
  local max=${BENCH_MAX_JAILS:-4000} n=0 end=$((SECONDS + 10))
  : > "$WORK/$name.pids"
  while (( SECONDS < end && n < max )); do
    "$@" >/dev/null 2>&1 &
    echo $! >> "$WORK/$name.pids"
    n=$((n + 1))
  done
  echo "$n"
}

_bc_stop() {
  local name=$1 p
  while read -r p; do kill "$p" 2>/dev/null || true; done < "$WORK/$name.pids"
  while read -r p; do wait "$p" 2>/dev/null || true; done < "$WORK/$name.pids"
}

bench_concurrency() {
  echo "== concurrency: idle jails started in 10 s, and host memory per idle jail (max ${BENCH_MAX_JAILS:-4000})"
  local before after started alive pss procs name
  local bwrap="bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin --proc /proc --dev /dev --tmpfs /tmp /bin/sleep 120"
  for name in clawjail bwrap; do
    sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true
    sleep 2
    before=$(_bc_mem_available_kib)
    if [[ $name == clawjail ]]; then
      started=$(_bc_start "$name" "$CJ" exec --quiet -- /bin/sleep 120)
    else
      started=$(_bc_start "$name" $bwrap)
    fi
    sleep 3   # let the last ones finish starting
    alive=0
    while read -r p; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done < "$WORK/$name.pids"
    after=$(_bc_mem_available_kib)
    read -r pss procs < <(_bc_pss_tree_kib $(cat "$WORK/$name.pids"))
    printf '  %-9s started %5d in 10 s (%d alive) | MemAvailable drop %s KiB/jail | PSS %s KiB/jail (%d processes)\n' \
      "$name" "$started" "$alive" "$(( (before - after) / (alive > 0 ? alive : 1) ))" \
      "$(( pss / (alive > 0 ? alive : 1) ))" "$procs"
    echo "$name $started $alive $(( (before - after) / (alive > 0 ? alive : 1) )) $(( pss / (alive > 0 ? alive : 1) ))" >> "$WORK/concurrency.txt"
    if [[ $name == clawjail ]]; then
      "$CJ" kill --all | sed 's/^/  emergency stop: /'
    fi
    _bc_stop "$name"
    [[ $name == clawjail ]] && "$CJ" gc >/dev/null
  done
  local cj bw
  cj=$(awk '$1=="clawjail"{print $2}' "$WORK/concurrency.txt")
  bw=$(awk '$1=="bwrap"{print $2}' "$WORK/concurrency.txt")
  printf '  ratio   jails started clawjail/bwrap %s (targets: >= 3000 in 10 s, <= 0.6 MiB per jail)\n' "$(ratio "$cj" "$bw")"
}
