#!/bin/sh
# The cgroup v2 tier: clawjail's v2 manager on a pure cgroup v2 kernel, run by /init
# in the qemu guest (scripts/vm-test builds and boots it). POSIX sh for busybox.
#
# One function per case. A case returns 0 when every assertion held; otherwise it sets
# `why` and returns 1. After each case the harness checks that nothing was left
# behind: no jail cgroup, no clawjail/ parent, no jailed process, no lock file.
# Prints PASS/FAIL/SKIP lines, then "N passed, N failed"; the exit status is the
# number of failed cases.

CJ=/usr/bin/clawjail
PROBE=/usr/bin/jailprobe
CG=/sys/fs/cgroup
JAILS=$CG/clawjail
LOCKS=/run/clawjail/jails
T=/tmp/cjt
# Outside uids of anonymous tool runs: IdRanges.anonymousTools, 0x70000000 + 65536.
TOOL_UID_FIRST=1879048192
TOOL_UID_END=1879113728

mkdir -p "$T"
passed=0
failed=0
skipped=0

# ---- helpers ---------------------------------------------------------------

now_ms() { vmtool ms; }

# clawjail exec in the foreground: sets rc; stdout and stderr in $T/out and $T/err.
cj() {
    "$CJ" exec "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

want_eq() { # ACTUAL EXPECTED WHAT
    [ "$1" = "$2" ] && return 0
    why="$3: got '$1', want '$2'"
    return 1
}

want_le() { # ACTUAL MAX WHAT
    [ -n "$1" ] && [ "$1" -le "$2" ] 2>/dev/null && return 0
    why="$3: got '$1', want <= $2"
    return 1
}

want_ge() { # ACTUAL MIN WHAT
    [ -n "$1" ] && [ "$1" -ge "$2" ] 2>/dev/null && return 0
    why="$3: got '$1', want >= $2"
    return 1
}

has() { # FILE TEXT WHAT
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    why="$3: '$2' not in $(basename "$1"): $(head -c 400 "$1" 2>/dev/null | tr '\n' '|')"
    return 1
}

lacks() { # FILE TEXT WHAT
    grep -qF -- "$2" "$1" 2>/dev/null || return 0
    why="$3: '$2' found in $(basename "$1")"
    return 1
}

# Polls CMD every 20 ms until it succeeds or MS milliseconds have passed.
wait_until() { # MS CMD...
    limit=$(( $(now_ms) + $1 ))
    shift
    while ! "$@"; do
        [ "$(now_ms)" -ge "$limit" ] && return 1
        usleep 20000
    done
    return 0
}

exists() { [ -e "$1" ]; }
gone() { [ ! -e "$1" ]; }
file_has() { grep -qF -- "$2" "$1" 2>/dev/null; }

# The one jail cgroup below DIR (default: the clawjail/ parent), empty when none.
jail_dir() {
    for d in "${1:-$JAILS}"/exec-*; do
        [ -d "$d" ] && { echo "$d"; return; }
    done
}

keyed() { # FILE KEY: the value of "KEY value" in a cgroup file
    while read -r k v _; do
        [ "$k" = "$2" ] && { echo "$v"; return; }
    done <"$1" 2>/dev/null
}

# Host pids of processes whose real uid is in the anonymous tool range.
tool_pids() {
    for s in /proc/[0-9]*/status; do
        while read -r k v _; do
            if [ "$k" = Uid: ]; then
                [ "$v" -ge "$TOOL_UID_FIRST" ] && [ "$v" -lt "$TOOL_UID_END" ] && { p=${s#/proc/}; echo "${p%/status}"; }
                break
            fi
        done 2>/dev/null <"$s"
    done
}

no_tool_pids() { [ -z "$(tool_pids)" ]; }

# Direct children of PID (the jail's init is the supervisor's only child).
children_of() {
    for s in /proc/[0-9]*/status; do
        while read -r k v _; do
            if [ "$k" = PPid: ]; then
                [ "$v" = "$1" ] && { p=${s#/proc/}; echo "${p%/status}"; }
                break
            fi
        done 2>/dev/null <"$s"
    done
}

cgroup_of() { sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null; }

# What every case must leave behind: nothing.
check_clean() {
    if [ -e "$JAILS" ]; then
        why="left over: $JAILS ($(ls "$JAILS" 2>/dev/null | tr '\n' ' '))"
        return 1
    fi
    left=$(tool_pids)
    if [ -n "$left" ]; then
        why="jailed processes still alive: $left"
        return 1
    fi
    for l in "$LOCKS"/*.lock; do
        [ -e "$l" ] && { why="lock file left over: $l"; return 1; }
    done
    return 0
}

# Ends whatever a failed case left running, so that the next case starts clean.
reap() {
    for p in $bg; do kill -9 "$p" 2>/dev/null; done
    for p in $bg; do wait "$p" 2>/dev/null; done
    bg=""
    for p in $(tool_pids); do kill -9 "$p" 2>/dev/null; done
    if [ -e "$JAILS" ]; then
        "$CJ" gc >/dev/null 2>&1
        for d in "$JAILS"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
        rmdir "$JAILS" 2>/dev/null
    fi
    for d in "$CG"/test.service/*/ "$CG"/test.service; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
}

run_case() { # NAME
    why=""
    bg=""
    rm -f "$T"/*
    start=$(now_ms)
    note=""
    # On the console only (the host shows it when the run fails or hangs).
    echo "RUN $1"
    if "t_$1" && check_clean; then
        echo "PASS $1 ($(( $(now_ms) - start )) ms${note:+; $note})"
        passed=$((passed + 1))
    elif [ "$why" = SKIP ]; then
        echo "SKIP $1: $skip_reason"
        skipped=$((skipped + 1))
    else
        echo "FAIL $1: $why"
        failed=$((failed + 1))
        for f in "$T"/*; do
            [ -s "$f" ] && { echo "  --- $(basename "$f")"; head -c 2000 "$f" | sed 's/^/  | /'; }
        done
        echo "  --- dmesg (last 15 lines)"
        dmesg | tail -n 15 | sed 's/^/  | /'
        reap
    fi
}

# ---- cases -----------------------------------------------------------------

# memory.max: a heap bomb is OOM-killed inside the jail, reported as OOM (137), and
# both the guest and clawjail live on (clawjail prints its line, the next jail runs).
t_oom_heap() {
    cj --memory 32M -- "$PROBE" memhog 200
    want_eq "$rc" 137 "exit status" || return 1
    has "$T/err" "OOM-killed (memory limit 32M)" "clawjail's result line" || return 1
    has "$T/out" "memhog progress 16" "the bomb allocated before it died" || return 1
    lacks "$T/out" "memhog done" "the bomb must not complete" || return 1
    cj -- "$PROBE" say alive
    want_eq "$rc" 0 "a jail after the OOM kill" || return 1
    has "$T/out" alive "a jail after the OOM kill" || return 1
}

# MemAvailable with the page cache and reclaimable slab dropped first, so that what
# it misses is memory something still holds.
settled_available() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
    keyed /proc/meminfo MemAvailable:
}

# A tmpfs (or memfd) bomb is charged to the jail: killed or refused, never the guest.
# Its pages are freed when the jail's mount namespace goes.
tmpfs_bomb() { # WHAT CMD...
    what=$1
    shift
    before=$(settled_available)
    shmem_before=$(keyed /proc/meminfo Shmem:)
    cat /proc/meminfo >"$T/meminfo.before"
    cj --memory 32M -- "$@"
    case "$rc" in
        137) has "$T/err" "OOM-killed (memory limit 32M)" "$what: result line" || return 1
             note="OOM-killed" ;;
        *) if ! grep -q "ENOSPC\|No space left" "$T/out" "$T/err"; then
               why="$what: exit $rc, neither OOM-killed (137) nor ENOSPC"
               return 1
           fi
           note="ENOSPC" ;;
    esac
    # 32 MB may have been charged; the guest must have it back. The kernel frees the
    # jail's tmpfs and its memcg asynchronously once the last process is gone (the
    # superblock and the offlined cgroup go from work queues, slowly under TCG), so
    # give it up to 10 s. Shmem counts tmpfs pages exactly, and is what is asserted.
    # MemAvailable, even with the caches dropped, is only reported: in about one run in
    # ten it stays ~32 MB short for 10 s with Shmem back to the kB and no process or
    # cgroup of the jail left (seen in CI and here), which is the kernel's, not a page
    # the jail still holds; the meminfo lines that moved are printed when it happens.
    start=$(now_ms)
    limit=$((start + 10000))
    while :; do
        after=$(settled_available)
        shmem=$(keyed /proc/meminfo Shmem:)
        [ "$shmem" -le $((shmem_before + 4096)) ] && [ "$after" -ge $((before - 16384)) ] && break
        [ "$(now_ms)" -ge "$limit" ] && break
        usleep 100000
    done
    waited=$(( $(now_ms) - start ))
    cat /proc/meminfo >"$T/meminfo.after"
    left="(Shmem before $shmem_before kB, after $shmem kB; MemAvailable before $before kB, after $after kB; waited $waited ms; $(grep -c . /proc/self/mountinfo) mounts)"
    want_le "$shmem" $((shmem_before + 4096)) "$what: guest Shmem (kB) after the run $left" || return 1
    note="$note; tmpfs pages back after $waited ms"
    if [ "$after" -lt $((before - 16384)) ]; then
        note="$note; MemAvailable $(( (before - after) / 1024 )) MB short: $(meminfo_moved "$T/meminfo.before" "$T/meminfo.after")"
    fi
}

meminfo_moved() { # BEFORE AFTER: the meminfo lines that moved by more than 4 MB
    while read -r k v _; do
        a=$(keyed "$2" "$k")
        d=$((a - v))
        [ "$d" -gt 4096 ] || [ "$d" -lt -4096 ] && printf '%s%+d kB ' "$k" "$d"
    done <"$1"
}

t_oom_tmpfs_dev_shm() { tmpfs_bomb /dev/shm "$PROBE" shmhog 200; }
t_oom_tmpfs_tmp() { tmpfs_bomb /tmp /bin/dd if=/dev/zero of=/tmp/bomb bs=1M count=200; }
t_oom_memfd() {
    cj --memory 32M -- "$PROBE" memfdhog 200
    want_eq "$rc" 137 "exit status" || return 1
    has "$T/err" "OOM-killed (memory limit 32M)" "clawjail's result line" || return 1
}

# pids.max: a fork bomb meets the limit (EAGAIN, with the jail's init counted) while
# a second jail starts and ends normally; the bomb's jail then exits cleanly.
t_pids_fork_bomb() {
    "$CJ" exec --pids 20 -- "$PROBE" forkbomb 4000 -- say bombed -- sleep 2 >"$T/bomb.out" 2>"$T/bomb.err" &
    sup=$!
    bg=$sup
    wait_until 20000 file_has "$T/bomb.out" bombed || { why="the fork bomb did not report"; return 1; }
    dir=$(jail_dir)
    [ -n "$dir" ] || { why="no jail cgroup under $JAILS"; return 1; }
    want_eq "$(cat "$dir/pids.max")" 20 "pids.max" || return 1
    want_le "$(cat "$dir/pids.current")" 20 "pids.current" || return 1
    # Which wall the bomb met: pids.max, or RLIMIT_NPROC (clawjail sets it to the same
    # number, and the kernel checks it first when every jailed process has one uid).
    hits=$(keyed "$dir/pids.events" max)
    cj -- "$PROBE" say still-responsive
    want_eq "$rc" 0 "a second jail during the bomb" || return 1
    has "$T/out" still-responsive "a second jail during the bomb" || return 1
    wait "$sup"
    rc=$?
    bg=""
    want_eq "$rc" 0 "the bomb's jail exit status" || return 1
    has "$T/bomb.err" "exited 0" "the bomb's result line" || return 1
    line=$(grep '^forkbomb ' "$T/bomb.out")
    forked=$(echo "$line" | sed -n 's/.*forked=\([0-9]*\).*/\1/p')
    # init + jailprobe + its children <= pids.max
    want_le "$forked" 18 "children forked ($line)" || return 1
    want_ge "$forked" 10 "children forked ($line)" || return 1
    case "$line" in *EAGAIN) ;; *) why="fork must fail with EAGAIN: $line"; return 1 ;; esac
    note="forked=$forked, pids.events max=$hits"
}

# cpu.max: 0.2 cores for a 2 s busy loop shows throttling in cpu.stat while it runs,
# and the loop gets about 400 ms of CPU.
t_cpu_throttle() {
    "$CJ" exec --cpu 0.2 -- "$PROBE" say spinning -- spin 2000 >"$T/spin.out" 2>"$T/spin.err" &
    sup=$!
    bg=$sup
    wait_until 20000 file_has "$T/spin.out" spinning || { why="the busy loop did not start"; return 1; }
    dir=$(jail_dir)
    want_eq "$(cat "$dir/cpu.max" 2>/dev/null)" "20000 100000" "cpu.max" || return 1
    throttled=0
    limit=$(( $(now_ms) + 4000 ))
    while [ -d "$dir" ] && [ "$(now_ms)" -lt "$limit" ]; do
        n=$(keyed "$dir/cpu.stat" nr_throttled)
        [ -n "$n" ] && [ "$n" -gt "$throttled" ] && throttled=$n
        [ "$throttled" -gt 2 ] && break
        usleep 100000
    done
    wait "$sup"
    rc=$?
    bg=""
    want_eq "$rc" 0 "exit status" || return 1
    want_ge "$throttled" 1 "cpu.stat nr_throttled while the loop ran" || return 1
    cpu=$(sed -n 's/^spin .*cpu_ms=\([0-9]*\).*/\1/p' "$T/spin.out")
    want_le "$cpu" 900 "CPU ms used in 2000 ms of wall time at 0.2 cores" || return 1
    note="nr_throttled=$throttled, cpu_ms=$cpu of 2000 ms"
}

# CLONE_INTO_CGROUP: the jail's init is in its cgroup from the start; inside, the
# cgroup namespace shows it as the root. The limits are written as asked.
t_placement_and_limits() {
    "$CJ" exec --memory 48M --pids 30 --cpu 0.5 -- /bin/sh -c 'cat /proc/self/cgroup; echo ready; sleep 2' \
        >"$T/jail.out" 2>"$T/jail.err" &
    sup=$!
    bg=$sup
    wait_until 20000 file_has "$T/jail.out" ready || { why="the jail did not start"; return 1; }
    dir=$(jail_dir)
    [ -n "$dir" ] || { why="no jail cgroup under $JAILS"; return 1; }
    name=${dir##*/}
    init=$(children_of "$sup")
    [ -n "$init" ] || { why="the supervisor has no child"; return 1; }
    grep -qx "$init" "$dir/cgroup.procs" || { why="init $init not in $dir/cgroup.procs: $(tr '\n' ' ' <"$dir/cgroup.procs")"; return 1; }
    want_eq "$(cgroup_of "$init")" "/clawjail/$name" "cgroup of the jail's init (outside)" || return 1
    want_eq "$(sed -n 1p "$T/jail.out")" "0::/" "/proc/self/cgroup inside the jail" || return 1
    # Non-delegated layout: the supervisor stays where it was started.
    want_eq "$(cgroup_of "$sup")" "/" "cgroup of the supervisor" || return 1
    for p in $(tool_pids); do
        grep -qx "$p" "$dir/cgroup.procs" || { why="jailed pid $p is outside the jail's cgroup ($(cgroup_of "$p"))"; return 1; }
    done
    want_eq "$(cat "$dir/memory.max")" $((48 * 1024 * 1024)) "memory.max" || return 1
    want_eq "$(cat "$dir/memory.swap.max")" 0 "memory.swap.max" || return 1
    want_eq "$(cat "$dir/pids.max")" 30 "pids.max" || return 1
    want_eq "$(cat "$dir/cpu.max")" "50000 100000" "cpu.max" || return 1
    wait "$sup"
    rc=$?
    bg=""
    want_eq "$rc" 0 "exit status" || return 1
    gone "$dir" || { why="$dir still exists after the run"; return 1; }
}

# --timeout: the wall clock kills the jail and the run says so (124).
t_timeout() {
    start_ms=$(now_ms)
    cj --timeout 1s -- /bin/sleep 30
    took=$(( $(now_ms) - start_ms ))
    want_eq "$rc" 124 "exit status" || return 1
    has "$T/err" "timed out after 1s" "clawjail's result line" || return 1
    want_le "$took" 8000 "ms until clawjail returned" || return 1
}

# Jails that start and end at the same time (rounds of 8): each gets its cgroup, and
# the shared clawjail/ parent, removed by whichever ends last, never fails one that is
# starting (it is recreated and its controllers enabled again).
t_parallel_jails() {
    round=0
    while [ $round -lt 5 ]; do
        i=0
        pids=""
        while [ $i -lt 8 ]; do
            "$CJ" exec -- /bin/true >"$T/p$i.out" 2>"$T/p$i.err" &
            pids="$pids $!"
            i=$((i + 1))
        done
        bg=$pids
        i=0
        for p in $pids; do
            wait "$p"
            rc=$?
            want_eq "$rc" 0 "round $round, jail $i: exit status" || return 1
            i=$((i + 1))
        done
        bg=""
        round=$((round + 1))
    done
    note="5 rounds of 8"
}

# A host where cpuset is enabled for the children of the root but cpu is not (systemd
# does this for AllowedCPUs=): clawjail must still enable cpu and write cpu.max.
t_cpu_beside_cpuset() {
    echo -cpu >"$CG/cgroup.subtree_control" 2>/dev/null
    echo +cpuset >"$CG/cgroup.subtree_control"
    enabled=" $(cat "$CG/cgroup.subtree_control") "
    case "$enabled" in
        *" cpu "*|*" cpuset "*" cpu "*) why="setup: cannot disable cpu at the root: $enabled"; return 1 ;;
        *" cpuset "*) ;;
        *) why="setup: cannot enable cpuset at the root: $enabled"; return 1 ;;
    esac
    "$CJ" exec --cpu 0.5 -- /bin/sh -c 'echo ready; sleep 1' >"$T/jail.out" 2>"$T/jail.err" &
    sup=$!
    bg=$sup
    wait_until 20000 file_has "$T/jail.out" ready || { why="the jail did not start"; return 1; }
    dir=$(jail_dir)
    max=$(cat "$dir/cpu.max" 2>/dev/null)
    wait "$sup"
    rc=$?
    bg=""
    echo -cpuset >"$CG/cgroup.subtree_control" 2>/dev/null
    want_eq "$max" "50000 100000" "cpu.max of the jail" || return 1
    want_eq "$rc" 0 "exit status" || return 1
}

# The supervisor is SIGKILLed mid-run: every jailed process dies with it (a setsid'd,
# double-forked daemon too); `clawjail gc` then removes the orphaned cgroup.
t_supervisor_sigkill() {
    "$CJ" exec -- "$PROBE" daemon 60 -- say ready -- sleep 60 >"$T/jail.out" 2>"$T/jail.err" &
    sup=$!
    bg=$sup
    wait_until 20000 file_has "$T/jail.out" ready || { why="the jail did not start"; return 1; }
    dir=$(jail_dir)
    name=${dir##*/}
    n=$(wc -l <"$dir/cgroup.procs")
    want_ge "$n" 3 "processes in the jail (init, probe, daemon)" || return 1
    kill -9 "$sup"
    wait "$sup" 2>/dev/null
    bg=""
    wait_until 5000 no_tool_pids || { why="jailed processes survived the supervisor: $(tool_pids)"; return 1; }
    want_eq "$(keyed "$dir/cgroup.events" populated)" 0 "populated in cgroup.events" || return 1
    exists "$dir" || { why="$dir vanished without gc (expected a leftover to collect)"; return 1; }
    "$CJ" gc >"$T/gc.out" 2>"$T/gc.err"
    want_eq "$?" 0 "clawjail gc exit status" || return 1
    has "$T/gc.out" "removed cgroup of $name" "clawjail gc output" || return 1
    gone "$dir" || { why="$dir still exists after gc"; return 1; }
    note="$n processes died with the supervisor"
}

# The emergency stop, when this build has it: every jail dies at once, each
# supervisor reports it and cleans up.
t_kill_all() {
    if ! "$CJ" --help 2>&1 | grep -qE '^ +kill( |$)'; then
        why=SKIP
        skip_reason="this clawjail has no kill command"
        return 1
    fi
    i=0
    while [ $i -lt 3 ]; do
        "$CJ" exec -- "$PROBE" say up -- sleep 60 >"$T/k$i.out" 2>"$T/k$i.err" &
        bg="$bg $!"
        i=$((i + 1))
    done
    i=0
    while [ $i -lt 3 ]; do
        wait_until 20000 file_has "$T/k$i.out" up || { why="jail $i did not start"; return 1; }
        i=$((i + 1))
    done
    "$CJ" kill --all >"$T/kill.out" 2>"$T/kill.err"
    want_eq "$?" 0 "clawjail kill --all exit status" || return 1
    has "$T/kill.out" "killed 3 jails" "clawjail kill --all output" || return 1
    note=$(sed -n 's/^killed /killed /p' "$T/kill.out")
    i=0
    for p in $bg; do
        wait "$p"
        rc=$?
        want_eq "$rc" 137 "exit status of killed jail $i" || return 1
        has "$T/k$i.err" "stopped by clawjail kill" "result line of killed jail $i" || return 1
        i=$((i + 1))
    done
    bg=""
}

# The delegated layout (a systemd unit with Delegate=yes): the supervisor moves
# itself into <unit>/supervisor and the jails live inside the unit, not in clawjail/.
t_delegated_layout() {
    unit=$CG/test.service
    for c in memory pids cpu io; do echo "+$c" >"$CG/cgroup.subtree_control" 2>/dev/null; done
    mkdir "$unit" || { why="cannot create $unit"; return 1; }
    vmtool setxattr "$unit" trusted.delegate 1 || { why="cannot set trusted.delegate on $unit"; return 1; }
    # Like a unit's main process: the only process in the unit is clawjail itself.
    sh -c 'echo $$ >"$1/cgroup.procs" && exec "$2" exec -- /bin/sh -c "cat /proc/self/cgroup; echo ready; sleep 1"' \
        sh "$unit" "$CJ" >"$T/jail.out" 2>"$T/jail.err" &
    sup=$!
    bg=$sup
    wait_until 20000 file_has "$T/jail.out" ready || { why="the jail did not start"; return 1; }
    dir=$(jail_dir "$unit")
    [ -n "$dir" ] || { why="no jail cgroup under $unit ($(ls "$unit" | tr '\n' ' '))"; return 1; }
    gone "$JAILS" || { why="$JAILS was created in the delegated layout"; return 1; }
    want_eq "$(cgroup_of "$sup")" "/test.service/supervisor" "cgroup of the supervisor" || return 1
    want_eq "$(cgroup_of "$(children_of "$sup")")" "/test.service/${dir##*/}" "cgroup of the jail's init" || return 1
    enabled=$(cat "$unit/cgroup.subtree_control")
    case "$enabled" in *memory*pids*) ;; *) why="controllers enabled in the unit: '$enabled'"; return 1 ;; esac
    wait "$sup"
    rc=$?
    bg=""
    want_eq "$rc" 0 "exit status" || return 1
    gone "$dir" || { why="$dir still exists after the run"; return 1; }

    # A second supervisor started from the leaf (the unit's process now) uses the unit too.
    sh -c 'echo $$ >"$1/supervisor/cgroup.procs" && exec "$2" exec -- /bin/sh -c "echo ready; sleep 1"' \
        sh "$unit" "$CJ" >"$T/jail2.out" 2>"$T/jail2.err" &
    sup=$!
    bg=$sup
    wait_until 20000 file_has "$T/jail2.out" ready || { why="the second jail did not start"; return 1; }
    dir=$(jail_dir "$unit")
    [ -n "$dir" ] || { why="second run: no jail cgroup under $unit ($(ls "$unit" | tr '\n' ' '))"; return 1; }
    gone "$JAILS" || { why="second run: $JAILS was created in the delegated layout"; return 1; }
    wait "$sup"
    rc=$?
    bg=""
    want_eq "$rc" 0 "second run: exit status" || return 1
    gone "$dir" || { why="second run: $dir still exists after the run"; return 1; }

    # From outside the unit, ps shows the jail and kill --all finds it through the
    # jail registry (no manager would look inside another unit's cgroup).
    sh -c 'echo $$ >"$1/supervisor/cgroup.procs" && exec "$2" exec -- /bin/sh -c "echo ready; sleep 30"' \
        sh "$unit" "$CJ" >"$T/jail3.out" 2>"$T/jail3.err" &
    sup=$!
    bg=$sup
    wait_until 20000 file_has "$T/jail3.out" ready || { why="the third jail did not start"; return 1; }
    dir=$(jail_dir "$unit")
    "$CJ" ps >"$T/ps.out" 2>&1
    grep -q "${dir##*/}.*running" "$T/ps.out" || { why="ps from outside the unit: $(cat "$T/ps.out")"; return 1; }
    "$CJ" kill --all >"$T/kill.out" 2>&1
    grep -q "killed 1 jail" "$T/kill.out" || { why="kill --all from outside the unit: $(cat "$T/kill.out")"; return 1; }
    wait "$sup"
    rc=$?
    bg=""
    want_eq "$rc" 137 "killed jail's exit status" || return 1
    gone "$dir" || { why="$dir still exists after kill --all"; return 1; }
    rmdir "$unit/supervisor" "$unit" || { why="cannot remove $unit: $(ls "$unit" | tr '\n' ' ')"; return 1; }
}

# ---- run -------------------------------------------------------------------

cases="oom_heap oom_tmpfs_dev_shm oom_tmpfs_tmp oom_memfd pids_fork_bomb cpu_throttle placement_and_limits
       timeout parallel_jails cpu_beside_cpuset supervisor_sigkill kill_all delegated_layout"
# VM_CASES="a b" scripts/vm-test passes cjt.cases=a,b on the kernel command line.
for arg in $(cat /proc/cmdline); do
    case "$arg" in cjt.cases=*) cases=$(echo "${arg#cjt.cases=}" | tr ',' ' ') ;; esac
done
for c in $cases; do
    if ! type "t_$c" >/dev/null 2>&1; then
        echo "FAIL $c: no such case"
        failed=$((failed + 1))
        continue
    fi
    run_case "$c"
done
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
exit "$failed"
