# Shared by the docker benchmarks (docker.sh, docker-nginx.sh); sourced after lib.sh (it
# checks what they need first). Debian's containerd and dockerd with their own state dirs and
# sockets under the bench's temp dir, inside a network namespace it makes (as
# toolstack/tests/common/docker.rs does: nothing touches the machine's interfaces), hx-runtime
# registered as `hx`:
#   docker_init WORK NS   names them; sets `docker` (the CLI on that daemon) and `in_ns`
#   docker_up             makes the namespace and starts both
#   docker_down           removes the containers, stops both, unmounts and deletes NS and WORK
runtime="${HX_RUNTIME:-$(dirname "$hx")/hx-runtime}"
for f in "$runtime" /usr/sbin/dockerd /usr/bin/containerd /usr/bin/docker; do
    [ -x "$f" ] || { echo "bench: missing $f (cargo build --release -p hx-oci-runtime; apt-get install docker.io)" >&2; exit 1; }
done
command -v skopeo >/dev/null || { echo "bench: skopeo is needed" >&2; exit 1; }
docker_init() {
    work="$1" ns="$2"
    docker=(/usr/bin/docker -H "unix://$work/docker.sock")
    in_ns=(nsenter "--net=/run/netns/$ns")
}

docker_down() {
    "${docker[@]}" ps -aq 2>/dev/null | xargs -r "${docker[@]}" rm -f >/dev/null 2>&1 || true
    [ -f "$work/docker.pid" ] && kill "$(cat "$work/docker.pid")" 2>/dev/null
    for _ in $(seq 50); do [ -S "$work/docker.sock" ] || break; sleep 0.2; done
    [ -n "${containerd_pid:-}" ] && kill "$containerd_pid" 2>/dev/null
    pkill -f "containerd-shim.*$work" 2>/dev/null || true
    sleep 1
    grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}

docker_up() {
    export HX_KERNEL="$kernel" HX_INIT="$init" HX_BACKEND=qemu
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    cat > "$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd-root"
state = "$work/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.ttrpc.sock"
[debug]
  address = ""
TOML
    "${in_ns[@]}" /usr/bin/containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
    containerd_pid=$!
    printf '{"runtimes": {"hx": {"path": "%s"}}}\n' "$runtime" > "$work/daemon.json"
    "${in_ns[@]}" /usr/sbin/dockerd --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/docker.pid" \
        -H "unix://$work/docker.sock" --containerd "$work/containerd.sock" --config-file "$work/daemon.json" \
        --storage-driver overlay2 --iptables=true >"$work/dockerd.log" 2>&1 &
    for _ in $(seq 300); do "${docker[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
    "${docker[@]}" version >/dev/null || { tail -n 5 "$work/dockerd.log" >&2; exit 1; }
}
