# Sourced by the other scripts: PATH with Swift, the repository root, and the build
# command for the release binary.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
  export PATH=/opt/swift/usr/bin:$PATH
fi
# The release binary is fully static: no ld.so work at start-up (about 1 ms saved on
# every `clawjail exec`), and it runs in a bare initramfs for the cgroup v2 tier.
release_build() {
  (cd "$ROOT" && swift build -c release --static-swift-stdlib -Xswiftc -static-executable "$@") || return
  huge_text "$RELEASE_BIN" >/dev/null
}
RELEASE_BIN=$ROOT/.build/release/clawjail

# Re-reads a clawjail binary's code into the page cache in 2 MiB pages, so every later
# run maps it with a few huge-page entries (scripts/hugetext.c says why). Run it after
# each build and after installing the binary elsewhere; a no-op where the kernel cannot.
huge_text() {
  local bin helper=$ROOT/.build/hugetext
  bin=$(readlink -f "$1") || return 0
  if [[ ! -x $helper || $ROOT/scripts/hugetext.c -nt $helper ]]; then
    mkdir -p "$ROOT/.build"
    gcc -O2 -Wall -o "$helper" "$ROOT/scripts/hugetext.c" || return 0
  fi
  # Cached 4 KiB pages would stay as they are: write the file out and drop them first.
  sync -d "$bin" && dd if="$bin" iflag=nocache count=0 status=none || true
  "$helper" "$bin" || true
}

# The jail's init (Sources/CClawjailChild/init.c) is copied out of the binary's
# `cj_init` section and run on its own, so its object must have no relocation in that
# section: each one is a reference to something outside it (.rodata constants, a libc
# function) that the copy would not have. $1: the build directory (.build/debug or
# .build/release).
check_init_object() {
  local obj
  obj=$(find -L "$1/" -path '*CClawjailChild.build/init.c.o' -print -quit 2>/dev/null)
  if [[ -z $obj ]]; then
    echo "check_init_object: no CClawjailChild.build/init.c.o under $1" >&2
    return 1
  fi
  local relocs
  relocs=$(readelf -rW "$obj" | awk "/^Relocation section '.rela.?cj_init'/ {p=1} p && /^\$/ {exit} p")
  if [[ -n $relocs ]]; then
    echo "$relocs" >&2
    echo "check_init_object: $obj references code or data outside the cj_init section (above); keep init.c self-contained (see its header comment)" >&2
    return 1
  fi
}
