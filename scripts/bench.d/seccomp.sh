# Sourced by scripts/bench: `scripts/bench seccomp` calls bench_seccomp.
#
# clawjail exec with the `tool` profile against bwrap with Docker's default profile
# precompiled and passed with --seccomp FD, side by side in one hyperfine run (both
# through bash, which hyperfine subtracts, because bwrap's profile arrives on an fd).
# Also: what a profile costs clawjail per start (cold: parse + compile + cache write;
# warm: the index), and the kernel's price for attaching each filter (probes/seccomp-load
# times the seccomp() call), with instruction counts.
#
# Needs: root, $CJ, bwrap, hyperfine, python3-seccomp (libseccomp's Python binding, to
# compile Docker's JSON), gcc, and Docker's profile in ../shared/data (skipped without).

bench_seccomp() {
  local docker=$ROOT/../shared/data/docker-default-seccomp.json
  local dir=$WORK/seccomp
  mkdir -p "$dir"
  echo "== seccomp: clawjail exec --profile tool vs bwrap --seccomp (Docker's default profile)"
  if [[ ! -f $docker ]]; then
    echo "  skipped: $docker is not present (Docker's profile is reference data, not part of the project)"
    return 0
  fi
  /usr/bin/python3 - "$docker" "$dir/docker.bpf" <<'PY'
import json, sys, seccomp
prof = json.load(open(sys.argv[1]))
def action(a, errno=1):
    return {"SCMP_ACT_ALLOW": seccomp.ALLOW, "SCMP_ACT_ERRNO": seccomp.ERRNO(errno),
            "SCMP_ACT_KILL": seccomp.KILL, "SCMP_ACT_TRAP": seccomp.TRAP, "SCMP_ACT_LOG": seccomp.LOG}[a]
ops = {"SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_NE": seccomp.NE, "SCMP_CMP_LT": seccomp.LT, "SCMP_CMP_LE": seccomp.LE,
       "SCMP_CMP_GT": seccomp.GT, "SCMP_CMP_GE": seccomp.GE, "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ}
f = seccomp.SyscallFilter(action(prof["defaultAction"], prof.get("defaultErrnoRet", 1)))
for s in prof["syscalls"]:
    inc, exc = s.get("includes", {}), s.get("excludes", {})
    if inc.get("caps") or inc.get("minKernel") or (inc.get("arches") and "amd64" not in inc["arches"]):
        continue  # a container without extra capabilities, on amd64
    if exc.get("arches") and "amd64" in exc["arches"]:
        continue
    act = action(s["action"], s.get("errnoRet", 1))
    args = []
    for a in s.get("args") or []:
        args.append(seccomp.Arg(a["index"], ops[a["op"]], a["value"], a.get("valueTwo", 0)) if a["op"] == "SCMP_CMP_MASKED_EQ"
                    else seccomp.Arg(a["index"], ops[a["op"]], a["value"]))
    for name in s["names"]:
        try:
            f.add_rule(act, name, *args)
        except Exception:
            pass  # a name this libseccomp does not know
with open(sys.argv[2], "wb") as out:
    f.export_bpf(out)
PY
  local cache=$WORK/seccomp-cache
  CLAWJAIL_CACHE_DIR=$cache "$CJ" exec --quiet --profile tool -- /bin/true
  local toolbpf=$dir/tool.bpf
  tail -c +153 "$(ls "$cache"/seccomp/*.bpf | head -1)" > "$toolbpf"
  echo "  instructions: clawjail tool $(( $(stat -c %s "$toolbpf") / 8 )), Docker default $(( $(stat -c %s "$dir/docker.bpf") / 8 ))"

  local bwrap="bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin --proc /proc --dev /dev --tmpfs /tmp --bind $WORK/ws /workspace --chdir /workspace"
  rounds "$dir/startup.json" 6 50 --warmup 10 \
    -n clawjail-tool "CLAWJAIL_CACHE_DIR=$cache $CJ exec --quiet --profile tool --workspace $WORK/ws -- /bin/true" \
    -n bwrap-docker "$bwrap --seccomp 3 /bin/true 3<$dir/docker.bpf" \
    -n floor-tool "FLOOR_BPF=$toolbpf $FLOOR mounts $WORK/ws /bin/true"
  medians "$dir/startup.json" > "$dir/startup.txt"
  local cj bw fl
  cj=$(awk -F'\t' '$1=="clawjail-tool"{print $2}' "$dir/startup.txt")
  bw=$(awk -F'\t' '$1=="bwrap-docker"{print $2}' "$dir/startup.txt")
  fl=$(awk -F'\t' '$1=="floor-tool"{print $2}' "$dir/startup.txt")
  printf '  median  clawjail exec --profile tool %s ms | bwrap --seccomp (Docker) %s ms | kernel floor with the tool filter %s ms\n' "$cj" "$bw" "$fl"
  printf '  ratio   clawjail/bwrap %s (target <= 0.6) | floor/bwrap %s | clawjail/floor %s\n' "$(ratio "$cj" "$bw")" "$(ratio "$fl" "$bw")" "$(ratio "$cj" "$fl")"

  # clawjail's own cost per start for the profile: cold (parse, compile, write cache
  # and index) vs warm (index hit), from the --verbose timing of whole exec runs.
  hyperfine -N --warmup 5 --runs 60 --export-json "$dir/cold.json" \
    --prepare "rm -rf $dir/cold-cache" \
    -n cold "env CLAWJAIL_CACHE_DIR=$dir/cold-cache $CJ exec --quiet --profile tool -- /bin/true" \
    -n warm "env CLAWJAIL_CACHE_DIR=$cache $CJ exec --quiet --profile tool -- /bin/true" >/dev/null
  medians "$dir/cold.json" > "$dir/cold.txt"
  local cold warm
  cold=$(awk -F'\t' '$1=="cold"{print $2}' "$dir/cold.txt")
  warm=$(awk -F'\t' '$1=="warm"{print $2}' "$dir/cold.txt")
  printf '  per start: first start with a new profile %s ms, later starts %s ms (difference: parse + compile + cache)\n' "$cold" "$warm"

  # The kernel's price of attaching each filter, timed around seccomp() itself.
  gcc -O2 -static -o "$dir/seccomp-load" "$ROOT/probes/seccomp-load.c"
  local name f samples
  for name in tool docker; do
    f=$dir/$name.bpf
    samples=$(for _ in $(seq 40); do SECCOMP_LOAD_TIMING=1 "$dir/seccomp-load" "$f" /bin/true 2>&1 | sed -n 's/.*attached in \([0-9]*\).*/\1/p'; done | sort -n)
    printf '  attach %-6s %4d instructions: median %s us\n' "$name" $(( $(stat -c %s "$f") / 8 )) \
      "$(echo "$samples" | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]/1000}')"
  done
}
