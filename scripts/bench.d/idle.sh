# Sourced by scripts/bench: `scripts/bench idle` calls bench_idle.
#
# Host memory per idle jail, clawjail (each --binary build, or the release build) and
# the floor, in BENCH_IDLE_ROUNDS rounds (default 3) that alternate them: each round
# starts BENCH_IDLE_JAILS idle jails (default 100) of one kind (jailstorm.py, 2 starts in
# flight per core), measures, and stops them. Measured: the drop in MemAvailable, the
# PSS of every process a jail adds (supervisor, init, command) and their page tables
# (VmPTE, which PSS leaves out). The page cache is not dropped between rounds: the
# builds compared may differ in how their code is cached (2 MiB or 4 KiB folios), and
# MemAvailable counts the cache as available anyway. Unlike the
# concurrency section it never runs `clawjail kill --all` (that would stop every jail on
# the host, other people's too): this run's jails are stopped through their
# supervisors' pids.

# PSS and VmPTE (KiB) of the given pids and all their descendants, how many processes
# that is, and how many of them are the jailed command: "pss pte procs commands".
_bi_tree() {
  /usr/bin/python3 - "$@" <<'PY'
import os, sys
children = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            children.setdefault(int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
        except OSError:
            pass
todo, seen, pss, pte, procs, commands = [int(p) for p in sys.argv[1:]], set(), 0, 0, 0, 0
while todo:
    p = todo.pop()
    if p in seen:
        continue
    seen.add(p)
    todo += children.get(p, [])
    try:
        comm = open(f"/proc/{p}/comm").read().strip()
        pss += sum(int(l.split()[1]) for l in open(f"/proc/{p}/smaps_rollup") if l.startswith("Pss:"))
        pte += sum(int(l.split()[1]) for l in open(f"/proc/{p}/status") if l.startswith("VmPTE:"))
    except (OSError, IndexError, ValueError):
        continue
    procs += 1
    commands += comm == "sleep"
print(pss, pte, procs, commands)
PY
}

# Waits (up to 60 s) until MemAvailable stops rising: the kernel frees the last round's
# network namespaces and cgroups from work queues, seconds after the jails are gone, and
# a round that starts before that would count the freed memory against its own jails.
_bi_settle() {
  local last now i
  last=$(_bc_mem_available_kib)
  for ((i = 0; i < 60; i++)); do
    sleep 1
    now=$(_bc_mem_available_kib)
    (( now - last < 2048 )) && return 0
    last=$now
  done
}

# _bi_round NAME CMD...: one round of NAME; appends "NAME drop_kib pss_kib pte_kib
# jails" to $WORK/idle.txt.
_bi_round() {
  local name=$1; shift
  local before after pss pte procs commands per i
  _bi_settle
  before=$(_bc_mem_available_kib)
  BENCH_MAX_JAILS=${BENCH_IDLE_JAILS:-100} _bc_start "idle-$name" "$@"
  # Until every launched jail runs its command (bounded: 30 s).
  for ((i = 0; i < 150; i++)); do
    read -r pss pte procs commands < <(_bi_tree $(cat "$WORK/idle-$name.pids"))
    (( commands >= BC_LAUNCHED )) && break
    sleep 0.2
  done
  sleep 3   # let the supervisors settle into their wait
  after=$(_bc_mem_available_kib)
  read -r pss pte procs commands < <(_bi_tree $(cat "$WORK/idle-$name.pids"))
  per=$(( commands > 0 ? commands : 1 ))
  echo "$name $(( (before - after) / per )) $(( pss / per )) $(( pte / per )) $commands" >> "$WORK/idle.txt"
  printf '  %-14s %4d idle jails | MemAvailable drop %5d KiB/jail | PSS %4d KiB/jail | page tables %3d KiB/jail (%d processes)\n' \
    "$name" "$commands" "$(( (before - after) / per ))" "$(( pss / per ))" "$(( pte / per ))" "$procs"
  _bc_stop "idle-$name"   # jailstorm.py has waited for every supervisor
}

bench_idle() {
  local rounds=${BENCH_IDLE_ROUNDS:-3} r b builds=("${BINARIES[@]}")
  ((${#builds[@]})) || builds=("clawjail=$CJ")
  echo "== idle: host memory per idle jail, ${BENCH_IDLE_JAILS:-100} at a time, $rounds rounds"
  : > "$WORK/idle.txt"
  # Each round starts one later in the list, so that no build always follows the same one.
  local n=$(( ${#builds[@]} + 1 )) k i
  for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < n; k++)); do
      i=$(( (r + k) % n ))
      if (( i == n - 1 )); then
        _bi_round floor "$FLOOR" mounts "$WORK/ws"
      else
        b=${builds[i]}
        _bi_round "${b%%=*}" "${b#*=}" exec --quiet --
      fi
    done
  done
  /usr/bin/python3 - "$WORK/idle.txt" "${builds[0]%%=*}" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, drop, pss, pte, jails = line.split()
    rows.setdefault(name, []).append((int(drop), int(pss), int(pte)))
def med(v):
    v = sorted(v)
    return v[len(v) // 2]
first = rows[sys.argv[2]]
for name, v in rows.items():
    m = [med([x[k] for x in v]) for k in range(3)]
    f = [max(1, med([x[k] for x in first])) for k in range(3)]
    print(f"  median  {name:14} MemAvailable drop {m[0]} KiB/jail ({m[0] / f[0]:.3f}x) | "
          f"PSS {m[1]} KiB/jail ({m[1] / f[1]:.3f}x) | page tables {m[2]} KiB/jail ({m[2] / f[2]:.3f}x) | {len(v)} rounds")
PY
}
