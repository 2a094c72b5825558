# Sourced by scripts/bench: `scripts/bench proxy` calls bench_proxy.
#
# A 100 MB download and 1000 small keep-alive requests, side by side in one run:
#   direct     curl -> server
#   clawjail   curl inside an egress jail -> clawjail's proxy (absolute-form "http" and
#              CONNECT "connect") -> server
#   tinyproxy  curl -> tinyproxy (Debian, its own config, on 127.0.0.1) -> server
#   relay      curl -> a bare splice(2) TCP relay in C (bench.d/relay.c, on 127.0.0.1)
#              -> server: what the extra TCP hop costs with no proxy logic at all
#   sockmap    curl -> a bare BPF sockmap relay in C (bench.d/sockmap-relay.c, on
#              127.0.0.1) -> server: the kernel redirects every skb, nothing else runs.
#              A reference that is not safe to ship: its queue toward a slow reader
#              has no bound (the file's header and the README say more)
#
# Everything happens in two network namespaces made here and deleted at the end:
# cjt-bup-PID (clawjail, tinyproxy and the direct client; the jail's peer netns hangs
# off it) and cjt-bnet-PID (the server on 93.184.216.34:80 and dnsmasq for the name
# the proxy resolves). They are joined by a veth and route nowhere else.
#
# Needs: root, $CJ (the clawjail binary), python3, curl, dnsmasq, tinyproxy, ip, nsenter, gcc.
# Figures are medians over BENCH_PROXY_ROUNDS rounds (default 3), the three clients
# interleaved in each round. MB is 10^6 bytes.

_BP_PIDS=()
_BP_NS=()
_BP_DIR=""

_bp_cleanup() {
  local p
  for p in "${_BP_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${_BP_PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  _BP_PIDS=()
  for p in "${_BP_NS[@]}"; do ip netns del "$p" 2>/dev/null || true; done
  _BP_NS=()
  [[ -n $_BP_DIR ]] && rm -rf "$_BP_DIR"
  _BP_DIR=""
}

# The origin server: HTTP/1.1 keep-alive, /big with sendfile, anything else "ok".
_bp_server_py() {
  cat <<'PY'
import os, socket, sys, threading
big = sys.argv[1]
size = os.path.getsize(big)
small = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rf = c.makefile("rb")
    with open(big, "rb") as bf:
        while True:
            line = rf.readline()
            if not line:
                break
            parts = line.split()
            path = parts[1] if len(parts) > 1 else b"/"
            close = False
            while True:
                h = rf.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                if h.lower().startswith(b"connection:") and b"close" in h.lower():
                    close = True
            if path.endswith(b"/big"):
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % size)
                c.sendfile(bf, 0, size)
            else:
                c.sendall(small)
            if close:
                break
    c.close()

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80))
s.listen(128)
print("ready", flush=True)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
PY
}

# The client: curl for every transfer; prints one JSON line per measurement.
_bp_client_py() {
  cat <<'PY'
import json, os, statistics, subprocess, sys, tempfile, time
mode, proxy, base, downloads, requests = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
variants = [("http", ["-x", proxy]), ("connect", ["-x", proxy, "-p"])] if proxy else [("direct", [])]
cfg = os.path.join(tempfile.mkdtemp(), "keepalive.cfg")
with open(cfg, "w") as f:
    for _ in range(requests):
        f.write('url = "%s/small"\noutput = "/dev/null"\n' % base)

def curl(args):
    return subprocess.run(["curl", "-sS", "--max-time", "300"] + args, capture_output=True, text=True)

for name, extra in variants:
    for _ in range(downloads):
        r = curl(extra + ["-o", "/dev/null", "-w", "%{speed_download} %{size_download} %{http_code}", base + "/big"])
        speed, size, code = r.stdout.split()
        print(json.dumps({"mode": mode, "variant": name, "kind": "download", "bytes_per_s": float(speed),
                          "size": int(size), "code": code, "err": r.stderr[:200]}), flush=True)
    t0 = time.monotonic()
    r = curl(extra + ["-K", cfg, "-w", "%{time_total} %{num_connects} %{http_code}\n"])
    wall = time.monotonic() - t0
    rows = [l.split() for l in r.stdout.splitlines() if l.strip()]
    print(json.dumps({"mode": mode, "variant": name, "kind": "keepalive",
                      "times": [float(x[0]) for x in rows], "connects": sum(int(x[1]) for x in rows),
                      "ok": sum(1 for x in rows if x[2] == "200"), "wall": wall, "err": r.stderr[:200]}), flush=True)
PY
}

bench_proxy() {
  local rounds=${BENCH_PROXY_ROUNDS:-3} downloads=${BENCH_PROXY_DOWNLOADS:-3} requests=${BENCH_PROXY_REQUESTS:-1000}
  local cj=${CJ:?set CJ to the clawjail binary}
  local id=$$ up net dir
  up=cjt-bup-$id
  net=cjt-bnet-$id
  echo "== proxy: 100 MB download and $requests keep-alive requests: direct, clawjail's proxy, tinyproxy ($rounds rounds)"
  for t in curl python3 dnsmasq tinyproxy nsenter ip; do
    command -v "$t" >/dev/null || { echo "  skipped: $t is not installed"; return 0; }
  done
  dir=$(mktemp -d /tmp/cjt-bench-proxy-XXXXXX)
  _BP_DIR=$dir
  # Whatever happens from here on, the namespaces, the processes and the files go.
  trap '_bp_cleanup; if declare -F cleanup >/dev/null; then cleanup; fi' EXIT
  trap 'exit 130' INT TERM

  ip netns add "$up"
  _BP_NS+=("$up")
  ip netns add "$net"
  _BP_NS+=("$net")
  ip link add "cjt-bu$id" netns "$up" type veth peer name "cjt-bn$id" netns "$net"
  ip -n "$up" addr add 100.96.0.2/30 dev "cjt-bu$id"
  ip -n "$up" link set lo up
  ip -n "$up" link set "cjt-bu$id" up
  ip -n "$up" route add default via 100.96.0.1
  ip -n "$net" addr add 100.96.0.1/30 dev "cjt-bn$id"
  ip -n "$net" link set lo up
  ip -n "$net" link set "cjt-bn$id" up
  ip -n "$net" addr add 93.184.216.34/32 dev lo
  ip -n "$net" addr add 203.0.113.53/32 dev lo

  mkdir -p "$dir/client" "$dir/state"
  chmod 700 "$dir/state"
  head -c 100000000 /dev/zero > "$dir/big"
  _bp_server_py > "$dir/server.py"
  _bp_client_py > "$dir/client/client.py"
  cat > "$dir/dnsmasq.conf" <<EOF
port=53
listen-address=203.0.113.53
bind-interfaces
no-resolv
no-hosts
no-poll
user=root
host-record=bench.example,93.184.216.34
EOF
  cat > "$dir/tinyproxy.conf" <<EOF
Port 8888
Listen 127.0.0.1
Timeout 600
MaxClients 64
Allow 127.0.0.1
DisableViaHeader Yes
LogLevel Error
LogFile "$dir/tinyproxy.log"
PidFile "$dir/tinyproxy.pid"
EOF
  # nsenter with only --net execs the program, so $! is the server's own pid.
  nsenter --net="/run/netns/$net" /usr/bin/python3 "$dir/server.py" "$dir/big" > "$dir/server.out" 2>&1 &
  _BP_PIDS+=($!)
  nsenter --net="/run/netns/$net" dnsmasq --conf-file="$dir/dnsmasq.conf" --keep-in-foreground \
    --pid-file="$dir/dnsmasq.pid" > "$dir/dnsmasq.out" 2>&1 &
  _BP_PIDS+=($!)
  nsenter --net="/run/netns/$up" tinyproxy -d -c "$dir/tinyproxy.conf" > "$dir/tinyproxy.out" 2>&1 &
  _BP_PIDS+=($!)
  gcc -O2 -Wall -pthread -o "$dir/relay" "$ROOT/scripts/bench.d/relay.c"
  nsenter --net="/run/netns/$up" "$dir/relay" 127.0.0.1 9999 93.184.216.34 80 > "$dir/relay.out" 2>&1 &
  _BP_PIDS+=($!)
  gcc -O2 -Wall -o "$dir/sockmap-relay" "$ROOT/scripts/bench.d/sockmap-relay.c"
  nsenter --net="/run/netns/$up" "$dir/sockmap-relay" 127.0.0.1 9998 93.184.216.34 80 > "$dir/sockmap-relay.out" 2>&1 &
  _BP_PIDS+=($!)
  local i
  for i in $(seq 1 100); do grep -q ready "$dir/server.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$dir/server.out" || { echo "  the server did not start: $(cat "$dir/server.out")"; _bp_cleanup; return 1; }
  for i in $(seq 1 50); do grep -q ready "$dir/relay.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$dir/relay.out" || { echo "  the relay did not start: $(cat "$dir/relay.out")"; _bp_cleanup; return 1; }
  for i in $(seq 1 50); do grep -q ready "$dir/sockmap-relay.out" 2>/dev/null && break; sleep 0.1; done
  local sockmap=1
  grep -q ready "$dir/sockmap-relay.out" || { echo "  no sockmap row: $(cat "$dir/sockmap-relay.out")"; sockmap=0; }
  sleep 0.3

  local inns=(nsenter --net="/run/netns/$up" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin)
  : > "$dir/results.jsonl"
  for i in $(seq 1 "$rounds"); do
    "${inns[@]}" /usr/bin/python3 "$dir/client/client.py" direct "" http://93.184.216.34 "$downloads" "$requests" >> "$dir/results.jsonl"
    "${inns[@]}" CLAWJAIL_STATE_DIR="$dir/state" "$cj" exec --quiet --network egress --allow bench.example \
      --resolver 203.0.113.53 --cpu 2 --memory 512M --ro "$dir/client:/bench" -- \
      /usr/bin/python3 /bench/client.py clawjail http://10.200.0.1:3128 http://bench.example "$downloads" "$requests" \
      >> "$dir/results.jsonl"
    "${inns[@]}" /usr/bin/python3 "$dir/client/client.py" tinyproxy http://127.0.0.1:8888 http://93.184.216.34 "$downloads" "$requests" \
      >> "$dir/results.jsonl"
    "${inns[@]}" /usr/bin/python3 "$dir/client/client.py" relay "" http://127.0.0.1:9999 "$downloads" "$requests" \
      >> "$dir/results.jsonl"
    if ((sockmap)); then
      "${inns[@]}" /usr/bin/python3 "$dir/client/client.py" sockmap "" http://127.0.0.1:9998 "$downloads" "$requests" \
        >> "$dir/results.jsonl"
    fi
  done

  local allowed
  allowed=$(sqlite3 "$dir/state/state.db" "SELECT count(*) FROM event WHERE kind = 'egress.allow'" 2>/dev/null || echo "?")
  python3 - "$dir/results.jsonl" "$allowed" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
problems = [r for r in rows if (r["kind"] == "download" and (r["size"] != 100_000_000 or r["code"] != "200"))
            or (r["kind"] == "keepalive" and r["ok"] != len(r["times"]))]
for r in problems:
    print("  problem:", {k: v for k, v in r.items() if k != "times"})
def dl(mode, variant):
    v = [r["bytes_per_s"] / 1e6 for r in rows if r["mode"] == mode and r["variant"] == variant and r["kind"] == "download"]
    return statistics.median(v) if v else None, len(v)
def ka(mode, variant):
    rs = [r for r in rows if r["mode"] == mode and r["variant"] == variant and r["kind"] == "keepalive"]
    t = [x * 1000 for r in rs for x in r["times"]]
    conns = sum(r["connects"] for r in rs)
    return (statistics.median(t) if t else None), len(t), conns
d, n = dl("direct", "direct")
k, kn, kc = ka("direct", "direct")
print(f"  {'':26} {'download MB/s':>14} {'ratio':>7}   {'keep-alive ms/req':>17} {'vs direct':>10}  connections")
print(f"  {'direct':26} {d:14.0f} {'1.00':>7}   {k:17.3f} {'':>10}  {kc}")
for mode in ("clawjail", "tinyproxy"):
    for variant in ("http", "connect"):
        dm, _ = dl(mode, variant)
        km, _, kconn = ka(mode, variant)
        if dm is None or km is None:
            print(f"  {mode + ' ' + variant:26} no data")
            continue
        print(f"  {mode + ' (' + variant + ')':26} {dm:14.0f} {dm / d:7.2f}   {km:17.3f} {km - k:+10.3f}  {kconn}")
fd, _ = dl("relay", "direct")
fk, _, fc = ka("relay", "direct")
if fd is not None and fk is not None:
    print(f"  {'bare C splice relay':26} {fd:14.0f} {fd / d:7.2f}   {fk:17.3f} {fk - k:+10.3f}  {fc}")
sd, _ = dl("sockmap", "direct")
sk, _, sc = ka("sockmap", "direct")
if sd is not None and sk is not None:
    print(f"  {'BPF sockmap relay, unsafe':26} {sd:14.0f} {sd / d:7.2f}   {sk:17.3f} {sk - k:+10.3f}  {sc}")
print(f"  samples: {n} downloads and {kn} requests per row; clawjail audit: {sys.argv[2]} egress.allow events")
print("  targets for clawjail: >= 0.90 x direct throughput, <= direct + 0.100 ms per keep-alive request")
print("  (bare relay: bench.d/relay.c, one more TCP hop and splice(2), no parsing, policy or audit)")
print("  (sockmap relay: bench.d/sockmap-relay.c, the kernel redirects each skb; no bound on what it")
print("   queues toward a slow reader, so no proxy can ship it as is: see the README's proxy section)")
print("  (tinyproxy closes the client connection after each plain request: its http row reconnects every time)")
PY
  _bp_cleanup
  trap 'if declare -F cleanup >/dev/null; then cleanup; fi' EXIT
  trap - INT TERM
}
