#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Traffic source and sink for tcp_monitor's checks and showcase (dom0; stdlib only).

Connects to HOST:PORT (the guest's sink, examples/tcp-monitor/guest-sink.sh),
sends for --duration seconds at full rate or at --rate bytes per second, and
prints one JSON object on stdout:

  {"host": ..., "port": ..., "local": "ADDR:PORT", "bytes_sent": N,
   "duration_s": S, "rate_Bps": R, "hold_s": H}

With --hold H it prints the JSON as soon as it stopped sending, then keeps
the connection open and idle for H seconds before closing it, so the guest's
view of the connection (tcp_monitor's copy, ss -ti) can be compared while
nothing changes.  Exits 1 (with a JSON "error") if it cannot connect.

With --serve it is the sink instead: listens on HOST:PORT, prints
{"listening": "ADDR:PORT"} once it does, takes one connection, reads and
discards for --duration seconds (counted from the connection), closes it
and prints {"peer": ..., "bytes_received": N, "duration_s": S, "rate_Bps": R}.
"""
import argparse
import json
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host", help="the guest's address (IPv4 or IPv6)")
    ap.add_argument("port", type=int, nargs="?", default=5001)
    ap.add_argument("--duration", type=float, default=5.0,
                    help="seconds to send (default 5)")
    ap.add_argument("--rate", type=float, default=0,
                    help="bytes per second (default 0: as fast as possible)")
    ap.add_argument("--chunk", type=int, default=64 * 1024,
                    help="bytes per send() (default 65536)")
    ap.add_argument("--hold", type=float, default=0,
                    help="seconds to keep the idle connection open afterwards")
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--serve", action="store_true",
                    help="be the sink: accept one connection and read from it")
    ap.add_argument("--accept-timeout", type=float, default=60.0,
                    help="with --serve: seconds to wait for the connection")
    a = ap.parse_args()
    if a.serve:
        return serve(a)

    out = {"host": a.host, "port": a.port}
    try:
        s = socket.create_connection((a.host, a.port),
                                     timeout=a.connect_timeout)
    except OSError as e:
        out["error"] = f"connect: {e}"
        print(json.dumps(out), flush=True)
        return 1
    s.settimeout(None)
    local = s.getsockname()
    out["local"] = (f"[{local[0]}]:{local[1]}" if ":" in local[0]
                    else f"{local[0]}:{local[1]}")
    chunk = b"\0" * a.chunk
    sent = 0
    start = time.monotonic()
    end = start + a.duration
    try:
        while True:
            now = time.monotonic()
            if now >= end:
                break
            # A stalled receiver must not keep send() past the end.
            s.settimeout(max(0.05, end - now))
            if a.rate > 0:
                # Paced: never ahead of rate * elapsed.
                ahead = sent - a.rate * (now - start)
                if ahead > 0:
                    time.sleep(min(ahead / a.rate, end - now))
                    continue
                n = min(a.chunk, max(1, int(a.rate * (now - start)) - sent + 1))
                sent += s.send(chunk[:n])
            else:
                sent += s.send(chunk)
    except TimeoutError:
        pass
    except OSError as e:
        out["error"] = f"send: {e}"
    s.settimeout(None)
    elapsed = time.monotonic() - start
    out.update(bytes_sent=sent, duration_s=round(elapsed, 3),
               rate_Bps=round(sent / elapsed if elapsed > 0 else 0.0),
               hold_s=a.hold)
    print(json.dumps(out), flush=True)
    if a.hold > 0:
        time.sleep(a.hold)
    s.close()
    return 1 if "error" in out else 0


def serve(a):
    out = {"host": a.host, "port": a.port}
    try:
        ls = socket.create_server((a.host, a.port))
    except OSError as e:
        out["error"] = f"listen: {e}"
        print(json.dumps(out), flush=True)
        return 1
    print(json.dumps({"listening": f"{a.host}:{a.port}"}), flush=True)
    ls.settimeout(a.accept_timeout)
    try:
        c, peer = ls.accept()
    except TimeoutError:
        out["error"] = f"no connection within {a.accept_timeout} s"
        print(json.dumps(out), flush=True)
        return 1
    ls.close()
    out["peer"] = f"{peer[0]}:{peer[1]}"
    got = 0
    start = time.monotonic()
    end = start + a.duration
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            c.settimeout(left)
            try:
                b = c.recv(1 << 16)
            except TimeoutError:
                break
            if not b:
                break
            got += len(b)
    except OSError as e:
        out["error"] = f"recv: {e}"
    elapsed = time.monotonic() - start
    c.close()
    out.update(bytes_received=got, duration_s=round(elapsed, 3),
               rate_Bps=round(got / elapsed if elapsed > 0 else 0.0))
    print(json.dumps(out), flush=True)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
