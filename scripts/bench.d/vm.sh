# Sourced by scripts/bench: `scripts/bench vm` calls bench_vm.
#
# A VM agent against the floor of the same VMM, in one run, under TCG (this kind of
# host's KVM is PVM and cannot boot a stock guest; TCG times say nothing about KVM's):
#
#   boot    `clawjail run` of a VM agent whose command is /bin/true (jail, virtiofsd,
#           guest init, shares, the agent, power-off, teardown), against bare qemu with
#           the same kernel, machine type and flags and a trivial static init that only
#           powers off. Interleaved rounds (BENCH_VM_ROUNDS, default 5), medians.
#   memory  one idle VM agent (guest RAM 256M): the drop in MemAvailable and the PSS of
#           its processes (supervisor, VMM jail: qemu, the file servers), against bare
#           qemu idling the trivial init (which then pauses instead of powering off).
#
#   exec    a warm tool run in that guest (`exec --agent /bin/true`: the guest's
#           clawjail builds a jail for it) against the same tool run as a namespace jail
#           on the host.
#   kill    `clawjail kill --all` of BENCH_VM_KILL_AGENTS (default 10) idle VM agents:
#           the time it reports, the wall time of the command, and the time until every
#           supervisor has reported the run's end (its VMM, file servers and cgroup gone).
#
# Targets (issue 22): boot <= 1.3x the floor; memory <= 1.3x the floor; exec <= 3x the
# host's; kill --all < 1 s for 10 VM agents.

_bvm_guest=$ROOT/.build/vm/guest

# A static init for the floor: powers off, or with "pause" on the command line waits.
_bvm_trivial() {
  local dir=$WORK/vm-trivial
  mkdir -p "$dir/root/dev"
  cat >"$dir/init.c" <<'C'
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) if (strcmp(argv[i], "pause") == 0) for (;;) pause();
    reboot(RB_POWER_OFF);
    return 0;
}
C
  gcc -O2 -static -o "$dir/root/init" "$dir/init.c"
  (cd "$dir/root" && find . | cpio -o -H newc --quiet -R 0:0 | gzip -1) >"$dir/initramfs.cpio.gz"
  echo "$dir/initramfs.cpio.gz"
}

# The floor's qemu: the flags a VM agent's VMM gets (VMPlan.qemuMicrovm) minus the
# shares, the control port and the jail.
_bvm_qemu() {
  local initrd=$1 append=$2
  echo /usr/bin/qemu-system-x86_64 -M microvm,memory-backend=mem -accel tcg,tb-size=128 -cpu max -m 256M -smp 1 \
    -object memory-backend-memfd,id=mem,size=256M,share=on -global virtio-mmio.force-legacy=false \
    -nodefaults -no-user-config -nographic -monitor none -no-reboot \
    -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny -serial null \
    -kernel "$_bvm_guest/vmlinuz" -initrd "$initrd" -append "'$append'"
}

_bvm_agent() {
  local name=$1 cmd=$2
  mkdir -p "$WORK/$name/ws"
  cat >"$WORK/$name/agent.toml" <<EOF
name = "$name"
command = $cmd
user = 1000
isolation = "vm"

[workspace]
host = "$WORK/$name/ws"

[network]
mode = "none"

[vm]
kernel = "$_bvm_guest/vmlinuz"
initrd = "$_bvm_guest/initramfs.cpio.gz"
accel = "tcg"
allow_tcg = true
memory = "256M"
EOF
  echo "$WORK/$name/agent.toml"
}

bench_vm() {
  echo "== vm: a VM agent vs bare qemu with the same kernel and flags (TCG: software emulation)"
  if [[ ! -f $_bvm_guest/manifest ]]; then
    CLAWJAIL_VM_BIN=$CJ "$ROOT/scripts/vm/guest-image" >/dev/null
  fi
  local trivial append
  trivial=$(_bvm_trivial)
  append=$(awk '$1=="cmdline"{ $1=""; sub(/^ /, ""); print }' "$_bvm_guest/manifest")
  local cfg
  cfg=$(_bvm_agent cjb-vmboot '["/bin/true"]')
  "$CJ" run "$cfg" >/dev/null 2>&1 || { echo "  clawjail run of the VM agent failed:"; "$CJ" run "$cfg" 2>&1 | tail -3; return 1; }
  rounds "$WORK/vm.json" "${BENCH_VM_ROUNDS:-5}" 1 -N \
    -n clawjail "$CJ run $cfg" \
    -n floor "$(_bvm_qemu "$trivial" "$append")"
  medians "$WORK/vm.json" >"$WORK/vm.txt"
  local cj fl
  cj=$(awk -F'\t' '$1=="clawjail"{print $2}' "$WORK/vm.txt")
  fl=$(awk -F'\t' '$1=="floor"{print $2}' "$WORK/vm.txt")
  printf '  boot    clawjail run (boot, shares, /bin/true, power-off, teardown) %s ms | bare qemu, trivial init %s ms\n' "$cj" "$fl"
  printf '  ratio   clawjail/floor %s (target <= 1.3)\n' "$(ratio "$cj" "$fl")"

  # Memory of one idle VM agent, then of the floor idling.
  local before after pids pss
  sync
  before=$(awk '/MemAvailable/{print $2}' /proc/meminfo)
  cfg=$(_bvm_agent cjb-vmidle '["/bin/sh", "-c", "echo ready; exec sleep 600"]')
  "$CJ" run "$cfg" >"$WORK/vmidle.out" 2>&1 &
  local sup=$!
  local i
  for i in $(seq 1 600); do grep -q ready "$WORK/vmidle.out" && break; sleep 0.1; done
  sleep 2
  after=$(awk '/MemAvailable/{print $2}' /proc/meminfo)
  read -r pss _ <<<"$(_bi_tree "$sup")"
  # A warm tool run in that guest (exec --agent: the guest's clawjail builds a jail for
  # /bin/true), against the same tool run as a namespace jail on the host.
  # The same shell loop in both gives the emulation's own slowdown (the floor of any
  # work in this guest): the exec's ratio is shown against the host's time times it.
  local loop="/bin/sh -c 'i=0; while [ \$i -lt 20000 ]; do i=\$((i+1)); done'"
  rounds "$WORK/vmexec.json" "${BENCH_VM_ROUNDS:-5}" 3 -N \
    -n guest "$CJ exec --agent cjb-vmidle --quiet -- /bin/true" \
    -n host "$CJ exec --quiet -- /bin/true" \
    -n guestloop "$CJ exec --agent cjb-vmidle --quiet -- $loop" \
    -n hostloop "$CJ exec --quiet -- $loop" || true
  medians "$WORK/vmexec.json" >"$WORK/vmexec.txt" 2>/dev/null || true
  kill -TERM "$sup"; wait "$sup" 2>/dev/null || true
  local cj_drop=$((before - after)) cj_pss=$pss
  sleep 1
  before=$(awk '/MemAvailable/{print $2}' /proc/meminfo)
  # exec: $! must be qemu itself, which is killed by that pid below.
  eval "exec $(_bvm_qemu "$trivial" "$append pause")" </dev/null >/dev/null 2>&1 &
  local q=$!
  sleep 6
  after=$(awk '/MemAvailable/{print $2}' /proc/meminfo)
  read -r pss _ <<<"$(_bi_tree "$q")"
  kill -KILL "$q"; wait "$q" 2>/dev/null || true
  local fl_drop=$((before - after)) fl_pss=$pss
  printf '  memory  idle VM agent: MemAvailable -%s MiB, PSS %s MiB | bare qemu: -%s MiB, PSS %s MiB\n' \
    $((cj_drop / 1024)) $((cj_pss / 1024)) $((fl_drop / 1024)) $((fl_pss / 1024))
  printf '  ratio   PSS clawjail/floor %s, MemAvailable drop %s (target <= 1.3)\n' \
    "$(ratio "$cj_pss" "$fl_pss")" "$(ratio "$cj_drop" "$fl_drop")"
  local ge he gl hl
  ge=$(awk -F'\t' '$1=="guest"{print $2}' "$WORK/vmexec.txt" 2>/dev/null)
  he=$(awk -F'\t' '$1=="host"{print $2}' "$WORK/vmexec.txt" 2>/dev/null)
  gl=$(awk -F'\t' '$1=="guestloop"{print $2}' "$WORK/vmexec.txt" 2>/dev/null)
  hl=$(awk -F'\t' '$1=="hostloop"{print $2}' "$WORK/vmexec.txt" 2>/dev/null)
  if [[ -n $ge && -n $he ]]; then
    printf '  exec    warm exec --agent /bin/true in the guest %s ms | the same as a namespace jail on the host %s ms (ratio %s, target <= 3)\n' \
      "$ge" "$he" "$(ratio "$ge" "$he")"
    if [[ -n $gl && -n $hl ]]; then
      local slow floor
      slow=$(awk -v a="$gl" -v b="$ge" -v c="$hl" -v d="$he" 'BEGIN { if (c - d > 0) printf "%.1f", (a - b) / (c - d); else print 0 }')
      floor=$(awk -v h="$he" -v s="$slow" 'BEGIN { printf "%.1f", h * s }')
      printf '  floor   a 20000-step shell loop takes %sx as long in the guest (%s ms - %s ms vs %s ms - %s ms): the host exec times that is %s ms; guest exec / that floor %s\n' \
        "$slow" "$gl" "$ge" "$hl" "$he" "$floor" "$(ratio "$ge" "$floor")"
    fi
  else
    echo "  exec    warm exec --agent in the guest: not measured ($(tail -n 2 "$WORK/vmexec.json.err" 2>/dev/null | tr '\n' ' '))"
  fi
  _bvm_kill_all
  echo "  (under TCG: absolute times and qemu's translation cache say nothing about KVM)"
}

# kill --all of N idle VM agents, all booted and waiting. Only this run's agents exist
# (its own state directory); scripts/bench is not run beside the test suite.
_bvm_kill_all() {
  local n=${BENCH_VM_KILL_AGENTS:-10} i cfg sups=() ready
  for ((i = 1; i <= n; i++)); do
    cfg=$(_bvm_agent "cjb-vmkill$i" '["/bin/sh", "-c", "echo ready; exec sleep 600"]')
    "$CJ" run "$cfg" >"$WORK/vmkill$i.out" 2>&1 &
    sups+=($!)
  done
  for ((i = 0; i < 1800; i++)); do
    ready=$(cat "$WORK"/vmkill*.out 2>/dev/null | grep -c '^ready$' || true)
    ((ready >= n)) && break
    sleep 0.1
  done
  if ((ready < n)); then
    echo "  kill    only $ready of $n VM agents booted in 180 s; not measured"
    kill -TERM "${sups[@]}" 2>/dev/null || true; wait "${sups[@]}" 2>/dev/null || true
    return 0
  fi
  local t0 t1 t2 said
  t0=$(date +%s%N)
  said=$("$CJ" kill --all)
  t1=$(date +%s%N)
  wait "${sups[@]}" 2>/dev/null || true
  t2=$(date +%s%N)
  printf '  kill    kill --all of %s idle VM agents: "%s"; the command took %s ms, all %s supervisors done after %s ms (target < 1 s)\n' \
    "$n" "$said" $(((t1 - t0) / 1000000)) "$n" $(((t2 - t0) / 1000000))
}
