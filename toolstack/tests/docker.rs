//! Docker's own CLI against a dockerd the test starts (common/docker.rs: Debian's docker.io in a
//! network namespace of its own). One dockerd for every check of this file: the same checks
//! first with docker's default runtime (runc), which proves the harness and the expectations,
//! then with `--runtime hx` (hx-runtime, the OCI runtime over hx micro-VMs).
mod common;
use common::docker::{Dockerd, Runtime, BUSYBOX};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// hx-runtime, built beside hx (`cargo build --release -p hx-oci-runtime`; `cargo test
/// --workspace` builds it).
fn hx_runtime() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hx")).with_file_name("hx-runtime")
}

/// `docker run` with the runtime's flags before the image.
fn cgroups_of(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
}

/// The hierarchy's directory (below /sys/fs/cgroup) and the group path of `controller` in a
/// /proc/PID/cgroup text: its v1 line (`4:cpu,cpuacct:/docker/ID`), else the unified one.
fn group_of<'a>(groups: &'a str, controller: &str) -> Option<(&'a str, &'a str)> {
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, list, path) = (f.next()?, f.next()?, f.next()?);
            list.split(',')
                .any(|c| c == controller)
                .then_some((list, path))
        })
        .next()
        .or_else(|| {
            groups
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(|p| ("", p))
        })
}

/// The CPU quota (µs per 100 ms period) of process `pid`'s group, and the file it came from.
fn cpu_quota_of(pid: &str) -> (String, String) {
    let groups = cgroups_of(pid);
    let (hierarchy, group) = group_of(&groups, "cpu").expect("a cpu cgroup");
    let dir = Path::new("/sys/fs/cgroup")
        .join(hierarchy)
        .join(group.trim_start_matches('/'));
    let (file, v1) = if hierarchy.is_empty() {
        (dir.join("cpu.max"), false)
    } else {
        (dir.join("cpu.cfs_quota_us"), true)
    };
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let quota = if v1 {
        text.trim()
    } else {
        text.split_whitespace().next().unwrap_or("")
    };
    (file.display().to_string(), quota.to_string())
}

fn run_args<'a>(runtime: &[&'a str], before: &[&'a str], after: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run"];
    v.extend_from_slice(before);
    v.extend_from_slice(runtime);
    v.push(BUSYBOX);
    v.extend_from_slice(after);
    v
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every check, through the docker CLI, for one runtime (`[]`: runc; `["--runtime", "hx"]`).
fn checks(d: &Dockerd, runtime: &[&str]) {
    let who = if runtime.is_empty() {
        "runc"
    } else {
        runtime[1]
    };
    // dockerd's own (its data root, made private), before any container.
    let mounts = d.mounts();
    let t0 = Instant::now();
    let r = d.docker(&run_args(runtime, &["--rm"], &["echo", "hi"]));
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "hi\n"),
        "{who}: {}",
        r.stderr
    );
    eprintln!("{who}: docker run --rm busybox echo hi: {:?}", t0.elapsed());
    let r = d.docker(&run_args(runtime, &["--rm"], &["sh", "-c", "exit 3"]));
    assert_eq!(r.code, 3, "{who}: {}{}", r.stdout, r.stderr);
    // docker's rule: a command that is not found is 127.
    let r = d.docker(&run_args(runtime, &["--rm"], &["no-such-command"]));
    assert_eq!(r.code, 127, "{who}: {}{}", r.stdout, r.stderr);
    // ... and one that is not executable, 126.
    let r = d.docker(&run_args(runtime, &["--rm"], &["/etc/passwd"]));
    assert_eq!(r.code, 126, "{who}: {}{}", r.stdout, r.stderr);
    // The command is the container's PID 1; with docker's --init, docker-init (tini, bound
    // from the host at /sbin/docker-init) is, and the command its child.
    // (Not `tr` last: sh would exec it in its own place.)
    let probe = ["sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo"];
    let r = d.docker(&run_args(runtime, &["--rm"], &probe));
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, format!("1\n{} \n", probe.join(" ")).as_str()),
        "{who}: {}",
        r.stderr
    );
    let r = d.docker(&run_args(runtime, &["--rm", "--init"], &probe));
    let (pid, one) = r.stdout.split_once('\n').unwrap_or_default();
    assert!(
        r.code == 0 && pid != "1" && one == format!("/sbin/docker-init -- {} \n", probe.join(" ")),
        "{who}: --init: {}{}",
        r.stdout,
        r.stderr
    );
    // docker's capability set, less --cap-drop, plus --cap-add, and no-new-privileges (the
    // spec's process.capabilities and noNewPrivileges).
    let r = d.docker(&run_args(
        runtime,
        &[
            "--rm",
            "--cap-drop",
            "NET_RAW",
            "--cap-add",
            "NET_ADMIN",
            "--security-opt",
            "no-new-privileges",
        ],
        &[
            "grep",
            "-E",
            "^(CapEff|CapBnd|NoNewPrivs)",
            "/proc/self/status",
        ],
    ));
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "CapEff:\t00000000a80415fb\nCapBnd:\t00000000a80415fb\nNoNewPrivs:\t1\n"
        ),
        "{who}: {}",
        r.stderr
    );

    // -d, then docker logs: both streams.
    let r = d.docker(&run_args(
        runtime,
        &["-d", "--name", "logger"],
        &[
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; exec sleep 1000",
        ],
    ));
    assert_eq!(r.code, 0, "{who}: {}{}", r.stdout, r.stderr);
    wait_until(
        &format!("{who}: docker logs"),
        Duration::from_secs(60),
        || {
            let l = d.docker_ok(&["logs", "logger"]);
            l.stdout == "to-stdout\n" && l.stderr == "to-stderr\n"
        },
    );
    // docker exec: the container's capabilities (the exec's process.capabilities). (`exec
    // --privileged` beyond a container's bounding set is refused by runc, "unable to apply
    // caps"; hx gives it, as `hx exec --privileged` does.)
    // And docker's default seccomp profile, which dockerd writes into the spec.
    let r = d.docker_ok(&[
        "exec",
        "logger",
        "grep",
        "-E",
        "^(CapEff|Seccomp):",
        "/proc/self/status",
    ]);
    assert_eq!(
        r.stdout, "CapEff:\t00000000a80425fb\nSeccomp:\t2\n",
        "{who}"
    );
    // The container's host processes (runc: the workload; hx: its keeper and VM, `docker
    // top`) are in the cgroup docker named for it, whose counters `docker stats` shows: not
    // the shim's group, which holds containerd and every other container.
    let id = d.docker_ok(&["inspect", "-f", "{{.Id}}", "logger"]).stdout;
    let top = d.docker_ok(&["top", "logger", "-o", "pid"]).stdout;
    let pids: Vec<&str> = top.lines().skip(1).map(str::trim).collect();
    assert!(!pids.is_empty(), "{who}: docker top: {top}");
    let all_in_docker_group = |when: &str| {
        for pid in &pids {
            let groups = cgroups_of(pid);
            // The memory and cpu controllers' groups (v1), or the unified one (v2).
            for controller in ["memory", "cpu"] {
                assert!(
                    group_of(&groups, controller).is_some_and(|(_, g)| g.contains(id.trim())),
                    "{who}, {when}: process {pid} of docker top is not in container {}'s \
                     {controller} cgroup:\n{groups}",
                    id.trim()
                );
            }
        }
    };
    all_in_docker_group("after docker run");
    let stats = d
        .docker_ok(&["stats", "--no-stream", "--format", "{{.PIDs}}", "logger"])
        .stdout;
    let tasks: u64 = stats.trim().parse().unwrap_or(0);
    assert!(
        tasks >= pids.len() as u64,
        "{who}: docker stats PIDs {stats:?}, docker top {pids:?}"
    );
    // docker update --memory of the running container: runc's cgroup limit; hx's VM
    // balloon, the guest's MemTotal 64 MiB lower.
    let mem_total = || -> u64 {
        let out = d
            .docker_ok(&[
                "exec",
                "logger",
                "awk",
                "/^MemTotal/ {print $2}",
                "/proc/meminfo",
            ])
            .stdout;
        out.trim().parse().unwrap_or(0)
    };
    let before = mem_total();
    d.docker_ok(&["update", "--memory", "64m", "--memory-swap", "-1", "logger"]);
    let limit = d.docker_ok(&["inspect", "-f", "{{.HostConfig.Memory}}", "logger"]);
    assert_eq!(limit.stdout.trim(), (64u64 << 20).to_string(), "{who}");
    if who == "hx" {
        wait_until(
            &format!("{who}: the guest's MemTotal after docker update (was {before} kB)"),
            Duration::from_secs(60),
            || mem_total() + (64 << 10) == before,
        );
    }

    // docker update --cpus: the quota lands in the container's cgroup, where runc puts it and
    // docker reads it back; hx's VM stays in that group.
    d.docker_ok(&["update", "--cpus", "0.5", "logger"]);
    all_in_docker_group("after docker update --cpus 0.5");
    let (quota_file, quota) = cpu_quota_of(pids[0]);
    assert_eq!(
        quota, "50000",
        "{who}: {quota_file} after docker update --cpus 0.5"
    );

    // docker stop -t 2 of a workload that ignores SIGTERM: SIGKILL after 2 s, 137.
    let r = d.docker(&run_args(
        runtime,
        &["-d", "--name", "stubborn"],
        &["sh", "-c", "trap '' TERM; echo ready; exec sleep 1000"],
    ));
    assert_eq!(r.code, 0, "{who}: {}{}", r.stdout, r.stderr);
    wait_until(
        &format!("{who}: stubborn ready"),
        Duration::from_secs(60),
        || d.docker_ok(&["logs", "stubborn"]).stdout == "ready\n",
    );
    let t0 = Instant::now();
    d.docker_ok(&["stop", "-t", "2", "stubborn"]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "{who}: docker stop -t 2 took {took:?}"
    );
    let code = d.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"]);
    assert_eq!(code.stdout.trim(), "137", "{who}");
    // (`sleep` is PID 1 of its namespace under runc and hx alike: SIGTERM is ignored.)
    d.docker_ok(&["stop", "-t", "2", "logger"]);

    // -p 8080:80: docker's DNAT/docker-proxy reach the container from the namespace.
    let r = d.docker(&run_args(
        runtime,
        &["-d", "--name", "web", "-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/etc"],
    ));
    assert_eq!(r.code, 0, "{who}: {}{}", r.stdout, r.stderr);
    let body = d.wait_for("http://127.0.0.1:8080/hostname", Duration::from_secs(120));
    let hostname = d.docker_ok(&["inspect", "-f", "{{.Config.Hostname}}", "web"]);
    assert_eq!(body.trim(), hostname.stdout.trim(), "{who}");
    let ip = d.docker_ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    let direct = d.fetch(&format!("http://{}:80/hostname", ip.stdout.trim()));
    assert_eq!(
        direct.as_deref().map(str::trim),
        Some(hostname.stdout.trim())
    );

    // docker exec: another process in the same container, its output and exit code.
    let r = d.docker(&["exec", "web", "sh", "-c", "cat /etc/hostname; exit 4"]);
    assert_eq!(
        (r.code, r.stdout.trim()),
        (4, hostname.stdout.trim()),
        "{who}: {}",
        r.stderr
    );

    let cmdlines = || -> Vec<String> {
        d.processes()
            .into_iter()
            .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .collect()
    };
    if !runtime.is_empty() {
        // The VMs run from the runtime's root under the test's exec root: the check below
        // that no process is left covers them.
        let vms = cmdlines()
            .into_iter()
            .filter(|c| c.starts_with("qemu-system"))
            .count();
        assert_eq!(vms, 1, "{who}: the QEMU of web (the others are stopped)");
    }

    // A user network (MTU 1400, dual stack): docker's embedded DNS resolves a container's
    // name for another one, which reaches it by that name and at its IPv6 address, through
    // the network's IPv6 default route; the guest's NIC has the network's MTU.
    let dns_check = Instant::now();
    d.docker_ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "--ipv6",
        "--subnet",
        "fd00:99::/64",
        "usernet",
    ]);
    let r = d.docker(&run_args(
        runtime,
        &["-d", "--network", "usernet", "--name", "db"],
        &["httpd", "-f", "-p", "80", "-h", "/etc"],
    ));
    assert_eq!(r.code, 0, "{who}: {}{}", r.stdout, r.stderr);
    let db_hostname = d.docker_ok(&["inspect", "-f", "{{.Config.Hostname}}", "db"]);
    let db6 = d.docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}",
        "db",
    ]);
    let db6 = db6.stdout.trim();
    assert!(
        db6.starts_with("fd00:99::"),
        "{who}: db's IPv6 address {db6:?}"
    );
    let client = format!(
        "cat /sys/class/net/eth0/mtu; nslookup db >/dev/null || exit 9; \
         for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://db/hostname && break; sleep 1; \
         [ $i = 10 ] && exit 8; done; \
         wget -qO- 'http://[{db6}]/hostname' || exit 7; \
         ip -6 route show default | grep -c 'via fd00:99::1'"
    );
    let t0 = Instant::now();
    let r = d.docker(&run_args(
        runtime,
        &["--rm", "--network", "usernet"],
        &["sh", "-c", &client],
    ));
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, format!("1400\n{0}{0}1\n", db_hostname.stdout).as_str()),
        "{who}: {}",
        r.stderr
    );
    eprintln!(
        "{who}: a client on usernet reached db by name: {:?}",
        t0.elapsed()
    );

    if !runtime.is_empty() {
        // The keeper's relay itself, from db's guest: a TCP query (length-prefixed) for "db"
        // is answered (2 + 36 bytes: one A record); a response sent as a query, and UDP bytes
        // that are no query, get nothing back.
        let query = |flags: &str| {
            format!(
                "printf '\\000\\024\\022\\064{flags}\\000\\001\\000\\000\\000\\000\\000\\000\\002db\\000\\000\\001\\000\\001' \
                 | nc -w 3 169.254.53.1 53 2>&1 | wc -c"
            )
        };
        let probe = format!(
            "{}; {}; printf 'not a query at all' | nc -u -w 1 169.254.53.1 53 2>&1 | wc -c",
            query("\\001\\000"),
            query("\\201\\000")
        );
        let r = d.docker(&["exec", "db", "sh", "-c", &probe]);
        let counts: Vec<u32> = r
            .stdout
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        assert_eq!(counts.len(), 3, "{who}: {}{}", r.stdout, r.stderr);
        assert!(counts[0] >= 38, "{who}: TCP answer of {} bytes", counts[0]);
        assert_eq!(
            &counts[1..],
            [0, 0],
            "{who}: answers to what is not a query"
        );
    }

    // docker rm -f: nothing of the containers is left (VMs, mounts, processes).
    d.docker_ok(&["rm", "-f", "web", "logger", "stubborn", "db"]);
    d.docker_ok(&["network", "rm", "usernet"]);
    eprintln!(
        "{who}: the user network check (with db's removal): {:?}",
        dns_check.elapsed()
    );
    let ps = d.docker_ok(&["ps", "-aq"]);
    assert_eq!(ps.stdout, "", "{who}");
    assert_eq!(d.mounts(), mounts, "{who}: mounts left");
    let left: Vec<String> = cmdlines()
        .into_iter()
        .filter(|c| !c.contains("dockerd") && !c.contains("containerd --config"))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "{who}: processes left");
    assert!(
        d.fetch("http://127.0.0.1:8080/").is_none(),
        "{who}: port still answers"
    );
    let links = d.in_netns(&["ip", "-br", "link"]).stdout;
    assert!(
        !links.lines().any(|l| l.starts_with("hx")),
        "{who}: interfaces left: {links}"
    );
}

/// A two-service app of docker-compose with `runtime: hx`: `front`, published on 8081, serves
/// what it fetched from `back` by its service name (docker's embedded DNS); `back` is on the
/// `backend` network only, `front` on `frontend` and `backend` (two NICs in its VM, each
/// with docker's address on that network); `down` leaves no container, network, VM, mount
/// or process.
fn compose_app(d: &Dockerd) {
    let mounts = d.mounts();
    let project = d.dir.join("compose");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("docker-compose.yml"),
        format!(
            r#"version: "2.4"
services:
  back:
    image: {BUSYBOX}
    runtime: hx
    networks: [backend]
    command: httpd -f -p 80 -h /etc
  front:
    image: {BUSYBOX}
    runtime: hx
    networks: [frontend, backend]
    ports: ["8081:80"]
    command: ["sh", "-c", "mkdir /www; until wget -qO /www/index.html http://back/hostname; do sleep 1; done; exec httpd -f -p 80 -h /www"]
networks:
  frontend: {{}}
  backend: {{}}
"#
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let r = d.compose(&project, &["-p", "hxapp", "up", "-d"]);
    assert_eq!(r.code, 0, "compose up: {}{}", r.stdout, r.stderr);
    let body = d.wait_for("http://127.0.0.1:8081/", Duration::from_secs(120));
    let back = d.docker_ok(&["inspect", "-f", "{{.Config.Hostname}}", "hxapp_back_1"]);
    assert_eq!(
        body.trim(),
        back.stdout.trim(),
        "front's page is back's hostname"
    );
    let running = d.docker_ok(&["ps", "-q"]);
    assert_eq!(running.stdout.lines().count(), 2);
    for c in ["hxapp_back_1", "hxapp_front_1"] {
        let rt = d.docker_ok(&["inspect", "-f", "{{.HostConfig.Runtime}}", c]);
        assert_eq!(rt.stdout.trim(), "hx", "{c}");
    }
    // front's guest has docker's address on each of its networks (eth0 and eth1).
    let addrs = d.docker_ok(&[
        "inspect",
        "-f",
        "{{range $n, $e := .NetworkSettings.Networks}}{{$n}}={{$e.IPAddress}} {{end}}",
        "hxapp_front_1",
    ]);
    let addrs: Vec<&str> = addrs.stdout.split_whitespace().collect();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let shown = d
        .docker_ok(&["exec", "hxapp_front_1", "ip", "-4", "addr"])
        .stdout;
    for a in &addrs {
        let ip = a.split_once('=').unwrap().1;
        assert!(shown.contains(&format!("inet {ip}/")), "{a}: {shown}");
    }
    eprintln!("compose: up -d until front answered: {:?}", t0.elapsed());
    let r = d.compose(&project, &["-p", "hxapp", "down", "-t", "2"]);
    assert_eq!(r.code, 0, "compose down: {}{}", r.stdout, r.stderr);
    assert_eq!(d.docker_ok(&["ps", "-aq"]).stdout, "");
    let nets = d
        .docker_ok(&["network", "ls", "--format", "{{.Name}}"])
        .stdout;
    assert!(!nets.contains("hxapp"), "networks left: {nets}");
    assert_eq!(d.mounts(), mounts, "mounts left");
    let left: Vec<i32> = d
        .processes()
        .into_iter()
        .filter(|p| {
            let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            !c.contains("dockerd") && !c.contains("containerd --config")
        })
        .collect();
    assert_eq!(left, Vec::<i32>::new(), "processes left");
    assert!(
        d.fetch("http://127.0.0.1:8081/").is_none(),
        "8081 still answers"
    );
    eprintln!("compose: the whole check: {:?}", t0.elapsed());
}

#[test]
fn docker_cli_with_runc_then_hx() {
    let runtime = Runtime {
        name: "hx".into(),
        path: hx_runtime(),
        args: vec![],
    };
    let Some(d) = Dockerd::start(&[runtime]) else {
        return;
    };
    assert!(
        hx_runtime().is_file(),
        "{} is missing: cargo build --release -p hx-oci-runtime",
        hx_runtime().display()
    );
    eprintln!("dockerd answered after {:?}", d.startup);
    d.load_busybox();
    checks(&d, &[]);
    checks(&d, &["--runtime", "hx"]);
    assert!(
        std::path::Path::new(common::docker::COMPOSE).is_file(),
        "{} is missing (apt-get install docker-compose)",
        common::docker::COMPOSE
    );
    compose_app(&d);
    nginx_published(&d);
}

/// The official-image way to serve a page: a real nginx image (tests/images/nginx.sh, Debian's
/// nginx-light configured as docker's nginx image is: `daemon off`, logs on stdout/stderr,
/// STOPSIGNAL SIGQUIT) loaded into docker, `docker run -d --runtime hx -p 8082:80 nginx`: the
/// welcome page through docker's published port, the access line in `docker logs`, and
/// `docker stop` sending the image's SIGQUIT, nginx's graceful quit (exit 0).
fn nginx_published(d: &Dockerd) {
    let layout = d.dir.join("nginx-layout");
    let archive = d.dir.join("nginx.tar");
    common::build_nginx_layout(&layout);
    let mut c = std::process::Command::new("skopeo");
    c.args(["copy", "-q"])
        .arg(format!("oci:{}", layout.display()))
        .arg(format!(
            "docker-archive:{}:nginx:hx-test",
            archive.display()
        ));
    let r = common::run_with_timeout(c, Duration::from_secs(120));
    assert_eq!(r.code, 0, "skopeo copy of the nginx layout: {}", r.stderr);
    d.docker_ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    std::fs::remove_file(&archive).unwrap();
    std::fs::remove_dir_all(&layout).unwrap();

    let t0 = Instant::now();
    d.docker_ok(&[
        "run",
        "-d",
        "--runtime",
        "hx",
        "--name",
        "ngx",
        "-p",
        "8082:80",
        "nginx:hx-test",
    ]);
    let page = d.wait_for("http://127.0.0.1:8082/", Duration::from_secs(180));
    assert!(page.contains("Welcome to nginx"), "nginx's page: {page}");
    eprintln!("nginx: the page {:?} after docker run", t0.elapsed());
    wait_until(
        "nginx's access line in docker logs",
        Duration::from_secs(30),
        || {
            d.docker_ok(&["logs", "ngx"])
                .stdout
                .contains("\"GET / HTTP/1.1\" 200")
        },
    );
    let signal = d.docker_ok(&["inspect", "-f", "{{.Config.StopSignal}}", "ngx"]);
    assert_eq!(signal.stdout.trim(), "SIGQUIT");
    // SIGKILL after the timeout would be 137: exit 0 is nginx's own graceful quit.
    d.docker_ok(&["stop", "-t", "60", "ngx"]);
    let code = d.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "ngx"]);
    assert_eq!(code.stdout.trim(), "0", "nginx's exit on docker stop");
    assert_eq!(
        d.fetch("http://127.0.0.1:8082/"),
        None,
        "8082 answers after stop"
    );
    d.docker_ok(&["rm", "ngx"]);
}
