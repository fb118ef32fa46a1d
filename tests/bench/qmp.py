#!/usr/bin/python3
"""Minimal QMP client for the benchmarks: qmp.py SOCKET COMMAND [JSON-ARGUMENTS] ...
Runs each COMMAND (pairs of name and optional JSON object) in order; for `migrate` it waits
until the migration has completed; the pseudo-command `wait-incoming` waits until an
-incoming migration has been loaded. Exits 1 on a QMP error."""
import json, socket, sys, time

def main():
    s = socket.socket(socket.AF_UNIX)
    for _ in range(500):
        try:
            s.connect(sys.argv[1]); break
        except OSError:
            time.sleep(0.01)
    f = s.makefile("rw")
    def call(cmd, args=None):
        msg = {"execute": cmd}
        if args: msg["arguments"] = args
        f.write(json.dumps(msg) + "\n"); f.flush()
        while True:
            r = json.loads(f.readline())
            if "return" in r: return r["return"]
            if "error" in r: sys.exit(f"qmp {cmd}: {r['error']}")
    json.loads(f.readline())
    call("qmp_capabilities")
    argv = sys.argv[2:]
    while argv:
        cmd = argv.pop(0); args = None
        if cmd == "wait-incoming":  # until an incoming migration has loaded
            while call("query-migrate").get("status") != "completed":
                time.sleep(0.002)
            continue
        if argv and argv[0].startswith("{"): args = json.loads(argv.pop(0))
        call(cmd, args)
        if cmd == "migrate":
            while call("query-migrate").get("status") not in ("completed", "failed"):
                time.sleep(0.005)
            if call("query-migrate").get("status") != "completed": sys.exit("migration failed")
main()
