# Sourced by scripts/bench: `scripts/bench concurrency` calls bench_concurrency.
#
# How many idle jails start in 10 s (2 starts in flight per core; a jail counts once its
# command runs), and the host memory each idle jail costs (the drop in MemAvailable, and
# the PSS of every process it adds: clawjail's supervisor, the jail's init and the
# command), clawjail beside bwrap and the kernel floor (scripts/bench.d/floor.c) in the
# same run. Then the emergency stop: how long
# `clawjail kill --all` takes for all of them, and for 100 idle jails. Bounded: at most
# BENCH_MAX_JAILS (default 4000) jails per tool, every one ended by the script.

_bc_mem_available_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }

# PSS (KiB) of the given pids and all their descendants, how many processes that is,
# and how many of them are the jailed command (comm "sleep"): "pss procs commands".
_bc_tree() {
  /usr/bin/python3 - "$@" <<'PY'
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
todo, seen, total, commands = list(roots), set(), 0, 0
while todo:
    p = todo.pop()
    if p in seen:
        continue
    seen.add(p)
    todo += children.get(p, [])
    try:
        if open(f"/proc/{p}/comm").read().strip() == "sleep":
            commands += 1
        for line in open(f"/proc/{p}/smaps_rollup"):
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    except OSError:
        pass
print(total, len(seen), commands)
PY
}

# _bc_start NAME CMD...: starts idle jails for 10 s, 2 starts in flight per core
# (scripts/bench.d/jailstorm.py); their pids in $WORK/NAME.pids. Sets BC_RUNNING (jails
# whose command ran within the 10 s) and BC_LAUNCHED.
_bc_start() {
  local name=$1; shift
  local i
  rm -f "$WORK/$name.pids.result"
  /usr/bin/python3 "$ROOT/scripts/bench.d/jailstorm.py" 10 "${BENCH_MAX_JAILS:-4000}" $(( 2 * $(nproc) )) "$WORK/$name.pids" -- "$@" &
  BC_STORM=$!
  for ((i = 0; i < 600; i++)); do
    [[ -e $WORK/$name.pids.result ]] && break
    sleep 0.1
  done
  read -r BC_RUNNING BC_LAUNCHED < "$WORK/$name.pids.result"
}

_bc_stop() {
  local name=$1 p
  while read -r p; do kill "$p" 2>/dev/null || true; done < "$WORK/$name.pids"
  wait "$BC_STORM" 2>/dev/null || true
}

bench_concurrency() {
  echo "== concurrency: idle jails started in 10 s, and host memory per idle jail (max ${BENCH_MAX_JAILS:-4000})"
  local before after alive pss procs commands name per
  local bwrap="bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin --proc /proc --dev /dev --tmpfs /tmp "
  : > "$WORK/concurrency.txt"
  for name in clawjail bwrap floor; do
    sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true
    sleep 2
    before=$(_bc_mem_available_kib)
    case $name in
      clawjail) _bc_start "$name" "$CJ" exec --quiet -- ;;
      bwrap) _bc_start "$name" $bwrap ;;
      floor) _bc_start "$name" "$FLOOR" mounts "$WORK/ws" ;;
    esac
    sleep 3   # let the last ones in flight finish starting
    after=$(_bc_mem_available_kib)
    read -r pss procs commands < <(_bc_tree $(cat "$WORK/$name.pids"))
    per=$(( commands > 0 ? commands : 1 ))
    printf '  %-9s %5d running within 10 s (%d launched; %d idle jails measured) | MemAvailable drop %s KiB/jail | PSS %s KiB/jail (%d processes)\n' \
      "$name" "$BC_RUNNING" "$BC_LAUNCHED" "$commands" "$(( (before - after) / per ))" "$(( pss / per ))" "$procs"
    echo "$name $BC_RUNNING $commands $(( (before - after) / per )) $(( pss / per ))" >> "$WORK/concurrency.txt"
    if [[ $name == clawjail ]]; then
      "$CJ" kill --all | sed 's/^/  emergency stop: /'
    fi
    _bc_stop "$name"
    [[ $name == clawjail ]] && "$CJ" gc >/dev/null
  done
  local cj bw fl
  cj=$(awk '$1=="clawjail"{print $2}' "$WORK/concurrency.txt")
  bw=$(awk '$1=="bwrap"{print $2}' "$WORK/concurrency.txt")
  fl=$(awk '$1=="floor"{print $2}' "$WORK/concurrency.txt")
  printf '  ratio   jails started in 10 s clawjail/bwrap %s | clawjail/floor %s (targets: >= 3000 in 10 s, <= 0.6 MiB per jail)\n' \
    "$(ratio "$cj" "$(( bw > 0 ? bw : 1 ))")" "$(ratio "$cj" "$(( fl > 0 ? fl : 1 ))")"
  echo "  (floor: scripts/bench.d/floor.c, the same namespaces, cgroup and root with no supervisor)"
  # The emergency stop at the size the issue names: 100 idle jails.
  : > "$WORK/kill100.pids"
  local i
  for ((i = 0; i < 100; i++)); do "$CJ" exec --quiet -- /bin/sleep 120 >/dev/null 2>&1 & echo $! >> "$WORK/kill100.pids"; done
  for ((i = 0; i < 100; i++)); do
    read -r pss procs commands < <(_bc_tree $(cat "$WORK/kill100.pids"))
    (( commands >= 100 )) && break
    sleep 0.2
  done
  "$CJ" kill --all | sed "s/^/  emergency stop with $commands idle jails: /"
  _bc_stop kill100
  "$CJ" gc >/dev/null
}
