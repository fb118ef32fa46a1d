#!/bin/bash
# A container brought back on Xen (issue 15): `hx create` + `hx start -a` boot the
# same writable layer again; `hx stop` then `hx start`, and `hx restart`, keep what the
# container wrote; `hx rename` of a running one renames its domain; `--restart on-failure:2`
# restarts exactly twice; nothing is left after rm.
set -u
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=1; }
wait_logs() { # NAME TEXT: until `hx logs NAME` is TEXT (120 s)
    for _ in $(seq 240); do [ "$(hx logs "$1" 2>/dev/null)" = "$2" ] && return 0; sleep 0.5; done
    return 1
}
# create + start -a and the restart policy are the engine's, the same for both types: PVH
# only (each boot costs half a minute under TCG); stop/start/restart on both.
for t in pvh pv; do
  if [ "$t" = pvh ]; then
    hx create --type "$t" --name "c-$t" busybox sh -c 'echo run; cat /seen 2>/dev/null; echo once >> /seen; exit 3' >/dev/null \
        && ok "$t: create" || bad "$t: create"
    [ "$(hx ps -a | grep -c " Created .* c-$t\$")" = 1 ] && ok "$t: ps shows Created" || bad "$t: ps: $(hx ps -a)"
    out=$(timeout 180 hx start -a "c-$t"); rc=$?
    [ "$rc:$out" = "3:run" ] && ok "$t: start -a: exit 3" || bad "$t: start -a: exit $rc, '$out'"
    out=$(timeout 180 hx start -a "c-$t"); rc=$?
    [ "$rc:$out" = "$(printf '3:run\nonce')" ] && ok "$t: start -a again: the writable layer kept its file" || bad "$t: second start -a: exit $rc, '$out'"
    hx rm "c-$t" >/dev/null || bad "$t: rm c"
  fi

    hx run -d --type "$t" --name "d-$t" busybox sh -c 'test -e /kept && m=kept || m=fresh; echo > /kept; echo $m; exec sleep 1000' >/dev/null
    wait_logs "d-$t" fresh || bad "$t: first run: '$(hx logs "d-$t")'"
    # 137, or 143 when the SIGTERM that comes first already ended it.
    hx stop -t 0 "d-$t" >/dev/null && [[ "$(hx inspect "d-$t" | jq -r '.[0].State.ExitCode')" =~ ^(137|143)$ ]] \
        && ok "$t: stop -t 0: 137/143" || bad "$t: stop: $(hx inspect "d-$t" | jq -c '.[0].State')"
    [ "$(hx start "d-$t")" = "d-$t" ] && wait_logs "d-$t" "$(printf 'fresh\nkept')" \
        && ok "$t: stop then start keeps the written file" || bad "$t: start: '$(hx logs "d-$t")'"
    [ "$(hx restart -t 1 "d-$t")" = "d-$t" ] && wait_logs "d-$t" "$(printf 'fresh\nkept\nkept')" \
        && ok "$t: restart keeps it too" || bad "$t: restart: '$(hx logs "d-$t")'"
    # hx rename of the running container renames its domain (xl list), exec still reaches it;
    # a name another domain has is refused.
    hx rename "d-$t" "e-$t" && xl domid "e-$t" >/dev/null 2>&1 && ! xl domid "d-$t" >/dev/null 2>&1 \
        && [ "$(timeout 60 hx exec "e-$t" echo hi 2>&1)" = hi ] \
        && ok "$t: rename of the running container renames its domain" \
        || bad "$t: rename: $(xl list | tr '\n' ' ') $(hx ps -a --format '{{.Names}}' | tr '\n' ' ')"
    out=$(hx rename "e-$t" Domain-0 2>&1); rc=$?
    [ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && xl domid "e-$t" >/dev/null 2>&1 \
        && ok "$t: rename to another domain's name: exit 1 ($out)" || bad "$t: rename to Domain-0: exit $rc: $out"
    hx rm -f "e-$t" >/dev/null || bad "$t: rm -f e"

    [ "$t" = pvh ] || continue
    hx run -d --type "$t" --name "f-$t" --restart on-failure:2 busybox sh -c 'echo try; exit 3' >/dev/null
    for _ in $(seq 240); do
        s=$(hx inspect "f-$t" | jq -r '.[0] | "\(.RestartCount) \(.State.Status) \(.State.Restarting)"')
        [ "$s" = "2 exited false" ] && break; sleep 0.5
    done
    sleep 3
    s=$(hx inspect "f-$t" | jq -r '.[0] | "\(.RestartCount) \(.State.Status) \(.State.ExitCode)"')
    [ "$s" = "2 exited 3" ] && [ "$(hx logs "f-$t" | grep -c try)" = 3 ] \
        && ok "$t: on-failure:2 restarted exactly twice" || bad "$t: on-failure:2: '$s', logs '$(hx logs "f-$t")'"
    hx rm -f "f-$t" >/dev/null || bad "$t: rm -f f"
done
left=$(xl list | awk 'NR>1 && $1 != "Domain-0"' | wc -l)
[ "$left" = 0 ] && ok "no domain left" || bad "domains left: $(xl list)"
pgrep -f __supervise >/dev/null && bad "a supervisor outlived its container" || ok "no supervisor left"
exit $fail
