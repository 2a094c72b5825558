// Python (stdlib only) for the network tests, written to the test's directory at start.
// Raw strings: the backslashes are Python's.

enum FakeInternetScripts {
    /// The fake internet's recording HTTP(S) servers and the rebinding DNS server (in cjt-net;
    /// also in cjt-up, as the host's own services).
    static let server = #"""
    # The fake internet of clawjail's network tests: HTTP(S) servers that record every
    # connection and request they receive, and a rebinding DNS server. stdlib only.
    import json, socket, socketserver, ssl, struct, sys, threading
    from http.server import BaseHTTPRequestHandler

    conf = json.load(open(sys.argv[1]))
    log_lock = threading.Lock()
    log_file = open(conf["log"], "a", buffering=1)

    def log(**kw):
        with log_lock:
            log_file.write(json.dumps(kw, sort_keys=True) + "\n")
            log_file.flush()

    def plain(addr):
        return addr[7:] if addr.startswith("::ffff:") else addr

    tls_ctx = None
    if conf.get("cert"):
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(conf["cert"], conf["key"])
        def on_sni(sock, name, ctx):
            sock.cj_sni = name
        tls_ctx.sni_callback = on_sni

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def setup(self):
            local = self.request.getsockname()
            self.site, self.lport = plain(local[0]), local[1]
            self.peer = plain(self.request.getpeername()[0])
            self.sni = None
            log(ev="accept", site=self.site, port=self.lport, peer=self.peer, label=self.server.label)
            if self.server.tls:
                self.request.settimeout(10)
                self.request = tls_ctx.wrap_socket(self.request, server_side=True)
                self.sni = getattr(self.request, "cj_sni", None)
                log(ev="tls", site=self.site, port=self.lport, sni=self.sni)
            super().setup()

        def log_message(self, *args):
            pass

        def handle_any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n > 0 else b""
            headers = [[k, v] for k, v in self.headers.items()]
            log(ev="request", site=self.site, port=self.lport, peer=self.peer, sni=self.sni, method=self.command,
                path=self.path, headers=headers, body_len=len(body), label=self.server.label)
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path.startswith("/bytes/"):
                size = int(self.path.split("/")[2])
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b"x" * 65536
                while size > 0:
                    k = min(size, len(chunk))
                    self.wfile.write(chunk[:k])
                    size -= k
                return
            out = json.dumps({"site": self.site, "port": self.lport, "sni": self.sni, "path": self.path,
                              "method": self.command, "headers": headers, "peer": self.peer}).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.send_header("X-Fake-Site", self.site)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_OPTIONS = do_PATCH = handle_any

    class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True
        def __init__(self, family, addr, tls, label):
            self.address_family = family
            self.tls = tls
            self.label = label
            super().__init__(addr, Handler, bind_and_activate=False)
            if family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            self.server_bind()
            self.server_activate()
        def handle_error(self, request, client_address):
            log(ev="error", label=self.label, err=repr(sys.exc_info()[1])[:200])

    # Rebinding DNS: answers A queries for its names from a list, in turn, with TTL 0.
    def dns_server(host, port, answers):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, port))
        turn = {}
        while True:
            data, peer = s.recvfrom(2048)
            if len(data) < 12:
                continue
            qid, flags, qd = struct.unpack("!HHH", data[:6])
            i, labels = 12, []
            while i < len(data) and data[i] != 0:
                n = data[i]
                labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
                i += 1 + n
            qname = ".".join(labels).lower()
            qtype, qclass = struct.unpack("!HH", data[i + 1:i + 5])
            question = data[12:i + 5]
            rd = flags & 0x0100
            if qname in answers:
                rcode, records = 0, b""
                if qtype == 1:
                    k = turn.get(qname, 0)
                    turn[qname] = k + 1
                    ip = answers[qname][k % len(answers[qname])]
                    records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + socket.inet_aton(ip)
                    log(ev="dns", name=qname, type="A", answer=ip, n=k)
                else:
                    log(ev="dns", name=qname, type=str(qtype), answer=None)
                ancount = 1 if records else 0
            else:
                rcode, records, ancount = 3, b"", 0
                log(ev="dns", name=qname, type=str(qtype), answer="NXDOMAIN")
            head = struct.pack("!HHHHHH", qid, 0x8400 | rd | rcode, 1, ancount, 0, 0)
            s.sendto(head + question + records, peer)

    for l in conf["listen"]:
        if l["kind"] == "dns":
            threading.Thread(target=dns_server, args=(l["host"], l["port"], l["answers"]), daemon=True).start()
            continue
        family = socket.AF_INET6 if ":" in l["host"] else socket.AF_INET
        srv = Server(family, (l["host"], l["port"]), l["kind"] == "https", l.get("label", ""))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    log(ev="ready")
    threading.Event().wait()
    """#

    /// The client that runs inside the jails: one JSON result line per step of its plan.
    static let client = #"""
    # Runs inside the jail: every step of a JSON plan, one JSON result line per step.
    import errno, json, os, socket, ssl, struct, subprocess, sys, time

    PROXY = ("10.200.0.1", 3128)

    def ename(e):
        if isinstance(e, socket.gaierror):
            return "gaierror"
        if isinstance(e, ssl.SSLError):
            return "SSLError:" + str(getattr(e, "reason", None))
        return errno.errorcode.get(e.errno, str(e.errno)) if getattr(e, "errno", None) else type(e).__name__

    def parse_response(data):
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = None
        if lines and lines[0].startswith("HTTP/"):
            parts = lines[0].split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return {"status": status, "headers": headers, "body": body.decode("latin-1")[:2000]}

    def read_all(sock, limit=1 << 20):
        chunks, total = [], 0
        while total < limit:
            try:
                b = sock.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
            total += len(b)
        return b"".join(chunks)

    def read_head(sock):
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            b = sock.recv(1)
            if not b:
                break
            data += b
        return data

    def dial(step):
        host, port = step.get("host", PROXY[0]), step.get("port", PROXY[1])
        s = socket.create_connection((host, port), timeout=step.get("timeout", 8))
        s.settimeout(step.get("timeout", 8))
        return s

    def tls_wrap(s, sni, cafile):
        if cafile:
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.check_hostname = sni is not None
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx.wrap_socket(s, server_hostname=sni)

    def run(step):
        op = step["op"]
        if op == "http":
            s = dial(step)
            if step.get("tls"):
                s = tls_wrap(s, step.get("sni"), step.get("cafile"))
            s.sendall(step["send"].encode("latin-1"))
            r = parse_response(read_all(s))
            s.close()
            return r
        if op == "connect":
            s = dial(step)
            s.sendall(step["send"].encode("latin-1"))
            r = parse_response(read_head(s))
            if r["status"] == 200 and step.get("then"):
                inner = s
                if step.get("tls"):
                    inner = tls_wrap(s, step.get("sni"), step.get("cafile"))
                inner.sendall(step["then"].encode("latin-1"))
                r["inner"] = parse_response(read_all(inner))
            elif r["status"] != 200:
                r["body"] = read_all(s).decode("latin-1")[:2000]
            s.close()
            return r
        if op == "tcp":
            s = dial(step)
            s.close()
            return {"result": "OK"}
        if op == "udp":
            host, port = step["host"], step["port"]
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.settimeout(step.get("timeout", 2))
            q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
            q += b"".join(bytes([len(p)]) + p.encode() for p in step["name"].split(".")) + b"\0" + struct.pack("!HH", 1, 1)
            # Connected, so an ICMP port unreachable comes back as ECONNREFUSED at once.
            s.connect((host, port))
            s.send(q)
            data = s.recv(2048)
            return {"result": "ANSWER", "rcode": data[3] & 15 if len(data) > 3 else None}
        if op == "resolve":
            infos = socket.getaddrinfo(step["name"], 80, socket.AF_INET, socket.SOCK_STREAM)
            return {"result": "OK", "addrs": sorted({i[4][0] for i in infos})}
        if op == "cmd":
            p = subprocess.run(step["argv"], capture_output=True, timeout=step.get("timeout", 20))
            return {"rc": p.returncode, "out": p.stdout.decode("latin-1")[:4000], "err": p.stderr.decode("latin-1")[:2000]}
        raise ValueError("unknown op " + op)

    for step in json.load(open(sys.argv[1])):
        t0 = time.monotonic()
        try:
            out = run(step)
        except Exception as e:
            out = {"result": ename(e), "error": repr(e)[:300]}
        out["id"] = step["id"]
        out["ms"] = round((time.monotonic() - t0) * 1000, 1)
        print(json.dumps(out, sort_keys=True), flush=True)
    """#

    /// The jailed agent of the ingress test.
    static let agent = #"""
    # A jailed agent for the ingress test: records what its own connections out get, then
    # serves HTTP on 0.0.0.0:8080 and on 127.0.0.1:8081 (loopback only), answering with
    # the peer address it sees.
    import errno, json, socket, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    def probe(kind, host, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            if kind == "udp":
                s.sendto(b"\x42\x42\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01", (host, port))
                s.recvfrom(512)
            else:
                s.connect((host, port))
            return "OK"
        except OSError as e:
            return errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
        finally:
            s.close()

    egress = {
        "tcp 93.184.216.34:80": probe("tcp", "93.184.216.34", 80),
        "tcp 169.254.169.254:80": probe("tcp", "169.254.169.254", 80),
        "tcp 203.0.113.53:53": probe("tcp", "203.0.113.53", 53),
        "udp 203.0.113.53:53": probe("udp", "203.0.113.53", 53),
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *args):
            pass
        def do_GET(self):
            if self.path.startswith("/bytes/"):
                size = int(self.path.split("/")[2])
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b"y" * 65536
                while size > 0:
                    self.wfile.write(chunk[:min(size, len(chunk))])
                    size -= min(size, len(chunk))
                return
            out = json.dumps({"peer": self.client_address[0], "local": self.connection.getsockname()[0],
                              "egress": egress, "path": self.path}).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    import threading
    public = ThreadingHTTPServer(("0.0.0.0", 8080), Handler)
    loopback = ThreadingHTTPServer(("127.0.0.1", 8081), Handler)
    threading.Thread(target=loopback.serve_forever, daemon=True).start()
    print("agent ready", json.dumps(egress, sort_keys=True), flush=True)
    public.serve_forever()
    """#
}
