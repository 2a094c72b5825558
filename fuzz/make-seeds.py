#!/usr/bin/env python3
"""Writes the binary seeds of fuzz/corpus/ (DNS messages, TLS ClientHellos). The text
seeds are written by hand. Run from the repository root; the output is committed, so
this only needs running again to change the seeds."""
import os
import ssl
import struct


def write(harness, name, data):
    path = os.path.join("fuzz", "corpus", harness, name)
    with open(path, "wb") as f:
        f.write(data)


# --- TLS: real ClientHellos from this Python's OpenSSL, and reframings of them.

def client_hello(server_name, **kw):
    ctx = ssl.create_default_context()
    if kw.get("tls12"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def records(handshake, sizes):
    """The handshake bytes as consecutive handshake records of the given sizes."""
    out, pos = b"", 0
    for n in sizes + [len(handshake)]:
        chunk = handshake[pos:pos + n]
        if not chunk:
            break
        out += bytes([22, 3, 1]) + struct.pack(">H", len(chunk)) + chunk
        pos += len(chunk)
    return out


hello = client_hello("api.example.com")
write("tls", "sni-tls13", hello)
write("tls", "sni-tls12-only", client_hello("a.example.org", tls12=True))
body = hello[5:]
write("tls", "split-two-records", records(body, [40]))
write("tls", "split-five-records", records(body, [1, 3, 60, 100]))
# A complete ClientHello and then the start of another record, as a client that sends
# early data or an alert right behind it does; whatever follows the hello must not
# change the answer the hello alone gives.
write("tls", "then-partial-record", hello + bytes([0x17]))
write("tls", "then-partial-record-4", hello + bytes([0x17, 3, 3, 0]))
write("tls", "then-whole-record", hello + bytes([0x15, 3, 3, 0, 2, 1, 0]))
write("tls", "header-only", hello[:5])
write("tls", "not-tls", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")


# --- DNS: queries the responder reads and responses the resolver reads.

def name(text):
    out = b""
    for label in text.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(id, flags, qd=0, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id, flags, qd, an, ns, ar)


def rr(owner, rtype, rdata, ttl=300):
    return owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


write("dns", "query-a", header(0x1234, 0x0100, qd=1) + name("api.example.com") + struct.pack(">HH", 1, 1))
write("dns", "query-aaaa-edns", header(7, 0x0100, qd=1, ar=1) + name("pypi.org") + struct.pack(">HH", 28, 1)
      + b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0))
write("dns", "query-https", header(8, 0x0100, qd=1) + name("www.example.net") + struct.pack(">HH", 65, 1))
# Answer: a CNAME chain with compression pointers back into the question (offset 12).
q = name("www.example.com")
msg = header(9, 0x8180, qd=1, an=3) + q + struct.pack(">HH", 1, 1)
msg += rr(b"\xc0\x0c", 5, b"\x03cdn" + b"\xc0\x10")
msg += rr(b"\xc0\x2d", 5, b"\x04edge\xc0\x10")
msg += rr(b"\xc0\x3f", 1, bytes([93, 184, 216, 34]))
write("dns", "response-cname-chain", msg)
write("dns", "response-nxdomain", header(10, 0x8183, qd=1, ns=1) + name("nope.example") + struct.pack(">HH", 1, 1)
      + rr(name("example"), 6, name("ns.example") + name("admin.example") + struct.pack(">IIIII", 1, 2, 3, 4, 5)))
write("dns", "pointer-loop", header(11, 0x8180, qd=1) + b"\xc0\x0c" + struct.pack(">HH", 1, 1))
write("dns", "truncated", header(12, 0x0100, qd=1) + name("api.example.com")[:7])
