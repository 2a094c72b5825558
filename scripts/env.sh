# Sourced by the other scripts: PATH with Swift, the repository root, and the build
# command for the release binary.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v swift >/dev/null 2>&1 && [[ -x /opt/swift/usr/bin/swift ]]; then
  export PATH=/opt/swift/usr/bin:$PATH
fi
# The release binary is fully static: no ld.so work at start-up (about 1 ms saved on
# every `clawjail exec`), and it runs in a bare initramfs for the cgroup v2 tier.
release_build() {
  (cd "$ROOT" && swift build -c release --static-swift-stdlib -Xswiftc -static-executable "$@")
}
RELEASE_BIN=$ROOT/.build/release/clawjail
