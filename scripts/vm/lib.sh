# Sourced by scripts/vm-test and scripts/vm/guest-image: the host packages a qemu guest
# needs, and Debian's cloud kernel, extracted from its package (never installed).
#
# The caller sets VM (the cache directory, e.g. $ROOT/.build/vm) and tmp (a scratch
# directory it removes), and defines step and die.

# The modules the guest's init loads, in dependency order (Sources/ClawjailGuest lists
# the same names): virtio-serial for the control channel, virtio-net, virtio-fs.
VM_GUEST_MODULES=(virtio_ring virtio virtio_mmio virtio_console failover net_failover virtio_net fuse virtiofs)

# Installs the Debian packages $@ that are missing (needs root for that).
vm_install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run as root so that apt-get can install them"
  step "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$tmp/apt.log" 2>&1; then
    apt-get update -qq >>"$tmp/apt.log" 2>&1 || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$tmp/apt.log" 2>&1 ||
      { cat "$tmp/apt.log" >&2; die "cannot install ${missing[*]}"; }
  fi
}

# The package name changes with every kernel ABI bump, so ask apt each time.
vm_kernel_package() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'
}

# Extracts package $1 into directory $2 without installing it:
#   $2/vmlinuz       /boot/vmlinuz-*
#   $2/release       the kernel release (the name of /lib/modules/<release>)
#   $2/overlay.ko    every jail's /etc is an overlayfs, a module in Debian's kernels
#   $2/modules/*.ko  VM_GUEST_MODULES, decompressed when the package has .ko.xz
vm_fetch_kernel() {
  local pkg=$1 dest=$2 name f
  # apt-get download drops privileges to _apt where it can: give it a directory it may write.
  chmod 0777 "$tmp"
  if ! (cd "$tmp" && apt-get download -qq "$pkg" >"$tmp/download.log" 2>&1); then
    # A stale package list names a version the mirror no longer has.
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$tmp" && apt-get download -qq "$pkg" >"$tmp/download.log" 2>&1) || return 1
  fi
  rm -rf "$tmp/kernel" "$dest"
  mkdir -p "$tmp/kernel" "$dest/modules"
  dpkg-deb --fsys-tarfile "$tmp/${pkg}"_*.deb | tar -x -C "$tmp/kernel" --wildcards './boot/vmlinuz-*' './lib/modules/*' || return 1
  local moddir
  moddir=$(echo "$tmp"/kernel/lib/modules/*/)
  basename "$moddir" >"$dest/release"
  for name in overlay "${VM_GUEST_MODULES[@]}"; do
    # Module file names use - or _ interchangeably; the kernel's name uses _.
    f=$(find "$moddir" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) -print -quit)
    [[ -n $f ]] || continue   # built into this kernel
    case $f in
      *.xz) xz -dc "$f" >"$dest/modules/$name.ko" ;;
      *.zst) zstd -qdc "$f" >"$dest/modules/$name.ko" ;;
      *) cp "$f" "$dest/modules/$name.ko" ;;
    esac
  done
  mv "$dest/modules/overlay.ko" "$dest/overlay.ko"
  mv "$tmp"/kernel/boot/vmlinuz-* "$dest/vmlinuz"
  rm -rf "$tmp/kernel" "$tmp/${pkg}"_*.deb
}

vm_cached_kernel() { ls -t "$VM"/kernel/*/vmlinuz 2>/dev/null | head -n 1 || true; }

# Sets `kernel` to $VM/kernel/<package>/vmlinuz: the current package's kernel, fetched
# when it is not cached yet (or was cached before the modules were kept); offline or
# when the download fails, the newest cached one.
vm_ensure_kernel() {
  local pkg old
  pkg=$(vm_kernel_package)
  if [[ -z $pkg ]]; then
    apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(vm_kernel_package)
  fi
  kernel=""
  if [[ -n $pkg && -s $VM/kernel/$pkg/vmlinuz && -s $VM/kernel/$pkg/overlay.ko && -s $VM/kernel/$pkg/release ]]; then
    kernel=$VM/kernel/$pkg/vmlinuz
  elif [[ -n $pkg ]]; then
    step "fetching the kernel from $pkg (apt-get download; the package is not installed)"
    if vm_fetch_kernel "$pkg" "$VM/kernel/$pkg"; then
      kernel=$VM/kernel/$pkg/vmlinuz
      # Kernels of earlier ABIs are not needed any more.
      for old in "$VM"/kernel/*/; do
        [[ $old == "$VM/kernel/$pkg/" ]] || rm -rf "$old"
      done
    else
      cat "$tmp/download.log" >&2
      rm -rf "$VM/kernel/$pkg"
      kernel=$(vm_cached_kernel)
      [[ -n $kernel ]] || die "cannot download $pkg, and no kernel is cached in $VM/kernel"
      step "cannot download $pkg; using the cached $(basename "$(dirname "$kernel")")"
    fi
  else
    # No package lists at all (offline): any kernel fetched before will do.
    kernel=$(vm_cached_kernel)
    [[ -n $kernel ]] || die "apt-cache does not know linux-image-cloud-amd64, and no kernel is cached in $VM/kernel"
  fi
}
