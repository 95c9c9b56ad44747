#!/usr/bin/env python3
"""The clinic network lab's stand-ins for the OQS side, run inside the lab's "NW-base" namespace:

- the line-authentication portal (HTTPS, test CA) on www.lineauth.mnw's address, serving the guide's
  page the lab chose (the file named in STATE, one of tests/fixtures/lineauth/*.html, or "down" to
  close each connection unanswered; "sjis:NAME"
  serves it in Shift_JIS with the charset only in a <meta> tag, as older portals do);
- OQS web production and verification login pages (HTTPS) and the CRL distribution point (HTTP);
- an SNTP server for ntp.base.oqs-pdl.org.

Usage: standin.py STATE_FILE FIXTURES_DIR CERT KEY PORTAL_ADDR WEB_ADDRS(,) CRL_ADDR NTP_ADDR
Addresses are IPv6, or IPv4 for the lab's IPv4 (PPPoE) closed network. Only ever binds the
addresses it is given (inside the lab's namespace). Stdlib only.
"""
import http.server
import os
import re
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time

STATE, FIXTURES, CERT, KEY, PORTAL, WEBS, CRL, NTP = sys.argv[1:9]


def family(addr):
    """IPv6 for the guide's network; IPv4 for the lab's IPv4 (PPPoE) closed network."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


class V6Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True


class V4Server(V6Server):
    address_family = socket.AF_INET


def handler(body_of):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            answer = body_of()
            if answer is None:
                # "down": the connection closes before any answer (the portal gives no page).
                self.close_connection = True
                return
            status, ctype, body = answer
            data = body if isinstance(body, bytes) else body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return H


def portal_page():
    try:
        name = open(STATE, encoding="utf-8").read().strip()
        if name == "down":
            return None
        encoding = None
        if ":" in name:
            encoding, name = name.split(":", 1)
        page = open(os.path.join(FIXTURES, os.path.basename(name)), encoding="utf-8").read()
        if encoding == "sjis":
            # The header names no charset; only the page does.
            page = re.sub(r'<meta[^>]*charset[^>]*>', "", page, flags=re.I)
            page = re.sub(r"<head>", '<head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">',
                          page, count=1, flags=re.I)
            return 200, "text/html", page.encode("shift_jis")
        return 200, "text/html; charset=utf-8", page
    except OSError as e:
        return 500, "text/plain", str(e)


def serve(addr, port, body_of, tls):
    srv = (V6Server if family(addr) == socket.AF_INET6 else V4Server)((addr, port), handler(body_of))
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CERT, KEY)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def sntp(addr):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.bind((addr, 123))
    while True:
        data, peer = s.recvfrom(512)
        if len(data) < 48:
            continue
        now = time.time() + 2208988800
        secs, frac = int(now), int((now % 1) * 2**32)
        # LI 0, VN 4, mode 4 (server); stratum 2; the client's transmit time as originate.
        reply = struct.pack("!BBbb", 0x24, 2, 6, -20) + b"\0" * 8 + b"LAB\0"
        reply += struct.pack("!II", secs, frac) + data[40:48]
        reply += struct.pack("!IIII", secs, frac, secs, frac)
        s.sendto(reply, peer)


serve(PORTAL, 443, portal_page, True)
for a in WEBS.split(","):
    serve(a, 443, lambda: (200, "text/html; charset=utf-8", "<html><body>オンライン資格確認 ログイン</body></html>"), True)
serve(CRL, 80, lambda: (200, "application/pkix-crl", "crl"), False)
threading.Thread(target=sntp, args=(NTP,), daemon=True).start()
print("standin ready", flush=True)
while True:
    time.sleep(3600)
