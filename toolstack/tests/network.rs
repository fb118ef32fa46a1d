//! Networking end to end on the QEMU backend, as root inside network namespaces the tests make
//! (common/netns.rs): published ports from another machine and from the host's localhost,
//! `hx port`, outbound NAT, DNS and hostname, `--network none`, conflicts, and that nothing is
//! left behind after rm, after a crash, or after the rules were flushed.
mod common;
use common::netns::{NetLab, CLIENT_IP, HOST_IP};
use common::{Hx, BUSYBOX};
use std::time::{Duration, Instant};

/// busybox httpd serving `body` on port 80.
fn httpd(body: &str) -> String {
    format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -v -p 80 -h /www")
}

fn lab() -> Option<(Hx, NetLab)> {
    let hx = Hx::new();
    if !hx.has_guest() {
        return None;
    }
    let lab = NetLab::new(&hx)?;
    hx.load_busybox();
    Some((hx, lab))
}

fn assert_nothing_left(hx: &Hx, lab: &NetLab, port: u16) {
    assert_eq!(lab.publish_rules(), Vec::<String>::new(), "port rules left");
    assert_eq!(lab.container_links(), Vec::<String>::new(), "taps left");
    assert_eq!(lab.leases(hx), Vec::new(), "addresses left");
    assert!(lab.port_free(port), "port {port} still held");
}

fn ip_of(hx: &Hx, lab: &NetLab, name: &str) -> String {
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.hx_ok(hx, &["inspect", name]).stdout).unwrap();
    inspect[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn published_port_answers_other_hosts_and_localhost_and_goes_with_the_container() {
    let Some((hx, lab)) = lab() else { return };
    lab.hx_ok(
        &hx,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:80",
            BUSYBOX,
            "sh",
            "-c",
            &httpd("hello-web"),
        ],
    );
    let url = format!("http://{HOST_IP}:8080/");
    assert_eq!(
        lab.wait_for_client(&url, Duration::from_secs(90)),
        "hello-web\n"
    );
    assert_eq!(
        lab.fetch_from_host("http://127.0.0.1:8080/").as_deref(),
        Some("hello-web\n")
    );
    assert_eq!(
        lab.fetch_from_host(&format!("http://{HOST_IP}:8080/"))
            .as_deref(),
        Some("hello-web\n")
    );

    assert_eq!(
        lab.hx_ok(&hx, &["port", "web"]).stdout,
        "80/tcp -> 0.0.0.0:8080\n"
    );
    assert_eq!(
        lab.hx_ok(&hx, &["port", "web", "80/tcp"]).stdout,
        "0.0.0.0:8080\n"
    );
    let r = lab.hx(&hx, &["port", "web", "81"]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (1, "hx: no public port '81/tcp' published for web")
    );
    let ps = lab.hx_ok(&hx, &["ps"]).stdout;
    assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.hx_ok(&hx, &["inspect", "web"]).stdout).unwrap();
    let ip = inspect[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10.88."), "{ip}");
    assert_eq!(
        inspect[0]["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        "8080"
    );
    // The access log names the client: the DNAT keeps the other host's address.
    let logs = lab.hx_ok(&hx, &["logs", "web"]);
    assert!(
        logs.stderr.contains(CLIENT_IP) || logs.stdout.contains(CLIENT_IP),
        "{}{}",
        logs.stdout,
        logs.stderr
    );

    // Taken ports: by another container, by a host program; both before anything is made.
    let r = lab.hx(&hx, &["run", "-d", "-p", "8080:80", BUSYBOX, "true"]);
    assert_eq!(r.code, 125);
    assert_eq!(
        r.stderr.trim(),
        "hx: port 0.0.0.0:8080/tcp is already allocated to container web"
    );
    let mut holder = lab.in_host("python3", &["-c", "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 9090)); s.listen(); print('ok', flush=True); time.sleep(600)"]);
    let mut holder = holder.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let r = lab.hx(&hx, &["run", "-d", "-p", "9090:80", BUSYBOX, "true"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(r.code, 125);
    assert_eq!(
        r.stderr.trim(),
        "hx: port 0.0.0.0:9090/tcp is already in use on the host"
    );
    let r = lab.hx(&hx, &["run", "-d", "-p", "80:80:80", BUSYBOX, "true"]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (
            125,
            "hx: invalid port mapping -p \"80:80:80\": \"80\" is not an IPv4 address"
        )
    );
    assert_eq!(
        lab.hx_ok(&hx, &["ps", "-a", "-q"]).stdout.lines().count(),
        1,
        "failed runs left containers"
    );

    // While it runs the port is held: nothing else on the host can take it.
    assert!(!lab.port_free(8080));
    lab.hx_ok(&hx, &["rm", "-f", "web"]);
    assert_nothing_left(&hx, &lab, 8080);
    assert!(lab.fetch_from_client(&url).is_none());
}

#[test]
fn stop_frees_the_port_and_a_crash_is_cleaned_by_ps() {
    let Some((hx, lab)) = lab() else { return };
    lab.hx_ok(
        &hx,
        &[
            "run",
            "-d",
            "--name",
            "a",
            "-p",
            "8081:80",
            BUSYBOX,
            "sh",
            "-c",
            &httpd("a"),
        ],
    );
    lab.wait_for_client(&format!("http://{HOST_IP}:8081/"), Duration::from_secs(90));
    lab.hx_ok(&hx, &["stop", "-t", "2", "a"]);
    assert_nothing_left(&hx, &lab, 8081);
    // The same port again, at once.
    lab.hx_ok(&hx, &["rm", "a"]);

    // hx run killed with SIGKILL: the VM runs on and keeps its port.
    let mut attached = lab.hx_cmd(
        &hx,
        &[
            "run",
            "--name",
            "b",
            "-p",
            "8081:80",
            BUSYBOX,
            "sh",
            "-c",
            &httpd("b"),
        ],
    );
    let mut attached = attached
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(
        lab.wait_for_client(&format!("http://{HOST_IP}:8081/"), Duration::from_secs(90)),
        "b\n"
    );
    attached.kill().unwrap();
    attached.wait().unwrap();
    assert!(lab
        .hx_ok(&hx, &["ps"])
        .stdout
        .contains("0.0.0.0:8081->80/tcp"));
    assert_eq!(
        lab.fetch_from_client(&format!("http://{HOST_IP}:8081/"))
            .as_deref(),
        Some("b\n")
    );

    // Rules lost while it runs (an admin's `nft flush ruleset`): the next hx command restores them.
    assert_eq!(lab.in_host_run(&["nft", "flush", "ruleset"]).code, 0);
    assert!(lab
        .fetch_from_client(&format!("http://{HOST_IP}:8081/"))
        .is_none());
    lab.hx_ok(&hx, &["ps"]);
    assert_eq!(lab.publish_rules().len(), 1);
    let guard = lab
        .in_host_run(&["nft", "list", "chain", "ip", "hx", "guard"])
        .stdout;
    assert_eq!(
        guard.matches("ip daddr 127.0.0.0/8 drop").count(),
        1,
        "{guard}"
    );
    assert_eq!(
        guard.matches("ip saddr 127.0.0.0/8 drop").count(),
        1,
        "{guard}"
    );
    assert_eq!(
        lab.fetch_from_client(&format!("http://{HOST_IP}:8081/"))
            .as_deref(),
        Some("b\n")
    );

    // Then the VM dies too (kill -9): `hx ps` finds it gone and releases everything.
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.hx_ok(&hx, &["inspect", "b"]).stdout).unwrap();
    let pid = inspect[0]["State"]["Pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ps = lab.hx_ok(&hx, &["ps", "-a"]).stdout;
    assert!(ps.contains("Exited (125)"), "{ps}");
    assert_nothing_left(&hx, &lab, 8081);
}

#[test]
fn outbound_nat_dns_hostname_and_no_network() {
    let Some((hx, lab)) = lab() else { return };
    // The client has no route to the container subnet: a reply only comes back through NAT.
    // resolv.conf as `ip netns exec` shows it to hx: the loopback stub is skipped.
    let etc = format!("/etc/netns/{}", lab.host);
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        format!("{etc}/resolv.conf"),
        "nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.test\noptions ndots:2\n",
    )
    .unwrap();
    let r = lab.hx(&hx, &["run", "--rm", "--hostname", "web1", BUSYBOX, "sh", "-c",
        &format!("ping -c 1 -W 5 {CLIENT_IP} >/dev/null && echo reached; hostname; cat /etc/resolv.conf; grep web1 /etc/hosts; ip -o -4 addr show eth0 | awk '{{print $4}}'; ip route | grep default")]);
    let _ = std::fs::remove_dir_all(&etc);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "reached", "{}", r.stdout);
    assert_eq!(lines[1], "web1");
    assert_eq!(
        &lines[2..5],
        [
            "nameserver 192.0.2.53",
            "search example.test",
            "options ndots:2"
        ]
    );
    assert!(
        lines[5].starts_with("10.88.0.") && lines[5].ends_with("\tweb1"),
        "{}",
        lines[5]
    );
    assert!(
        lines[6].starts_with("10.88.0.") && lines[6].ends_with("/16"),
        "{}",
        lines[6]
    );
    assert!(
        lines[7].starts_with("default via 10.88.0.1 dev eth0"),
        "{}",
        lines[7]
    );

    let r = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            BUSYBOX,
            "sh",
            "-c",
            "ls /sys/class/net; ip -o -4 addr",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.lines().any(|l| l == "lo") && !r.stdout.contains("eth0"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("127.0.0.1/8") && !r.stdout.contains("10.88."),
        "{}",
        r.stdout
    );

    let r = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-p",
            "80:80",
            BUSYBOX,
            "true",
        ],
    );
    assert_eq!(
        (r.code, r.stderr.trim()),
        (
            125,
            "hx: -p/-P need a network: they cannot be used with --network none"
        )
    );
    let r = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--network",
            "bridge=nosuchbr",
            BUSYBOX,
            "true",
        ],
    );
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("bridge nosuchbr does not exist"),
        "{}",
        r.stderr
    );
    let r = lab.hx(&hx, &["run", "--rm", "--network", "host", BUSYBOX, "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("--network host: not possible"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.hx_ok(&hx, &["ps", "-a", "-q"]).stdout, "");
    assert_nothing_left(&hx, &lab, 80);
}

#[test]
fn containers_on_one_bridge_get_distinct_addresses_and_reach_each_other() {
    let Some((hx, lab)) = lab() else { return };
    lab.hx_ok(
        &hx,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            BUSYBOX,
            "sh",
            "-c",
            &httpd("peer"),
        ],
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.hx_ok(&hx, &["inspect", "srv"]).stdout).unwrap();
    let ip = inspect[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let r = lab.hx(&hx, &["run", "--rm", BUSYBOX, "sh", "-c",
        &format!("for i in $(seq 1 60); do wget -q -O - http://{ip}/ && exit 0; sleep 1; done; exit 1")]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "peer\n"), "{}", r.stderr);
    lab.hx_ok(&hx, &["rm", "-f", "srv"]);
    assert_nothing_left(&hx, &lab, 80);
}

#[test]
fn user_mode_networking_without_root() {
    let Some((hx, lab)) = lab() else { return };
    // A store the unprivileged user owns, in the host namespace (QEMU binds the port there).
    let uroot = tempfile::Builder::new()
        .prefix("hx-user-")
        .tempdir()
        .unwrap();
    let uid = "65534";
    assert!(std::process::Command::new("chown")
        .args([&format!("{uid}:{uid}"), uroot.path().to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let base = hx.cmd(&[]);
    let hx_bin = base.get_program().to_string_lossy().to_string();
    let envs: Vec<String> = base
        .get_envs()
        .filter(|(k, _)| *k != "HX_NETWORK")
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let run = |args: &[&str]| {
        let mut c = lab.in_host(
            "setpriv",
            &[
                "--reuid",
                uid,
                "--regid",
                uid,
                "--clear-groups",
                "env",
                "HOME=/nonexistent",
            ],
        );
        c.args(&envs)
            .arg(&hx_bin)
            .arg("--root")
            .arg(uroot.path())
            .args(args);
        common::run_with_timeout(c, Duration::from_secs(180))
    };
    let r = run(&[
        "load",
        "-i",
        common::shared_image("glibc").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&[
        "run",
        "-d",
        "--name",
        "u",
        "-p",
        "8090:80",
        BUSYBOX,
        "sh",
        "-c",
        &httpd("user-mode"),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deadline = Instant::now() + Duration::from_secs(90);
    let body = loop {
        if let Some(b) = lab.fetch_from_host("http://127.0.0.1:8090/") {
            break b;
        }
        assert!(Instant::now() < deadline, "user-mode port did not answer");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(body, "user-mode\n");
    assert_eq!(run(&["port", "u"]).stdout, "80/tcp -> 0.0.0.0:8090\n");
    let r = run(&["run", "-d", "--network", "bridge=hx0x", BUSYBOX, "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("needs root"), "{}", r.stderr);
    assert_eq!(run(&["rm", "-f", "u"]).code, 0);
    // No bridge, no rules: a user's containers never touch the host's network configuration.
    assert!(!lab
        .in_host_run(&["ip", "link", "show", "hx0"])
        .stdout
        .contains("hx0"));
    assert_eq!(lab.publish_rules(), Vec::<String>::new());
    assert!(lab.port_free(8090));
}

#[test]
fn udp_ports_and_ports_bound_to_one_address() {
    let Some((hx, lab)) = lab() else { return };
    let script = format!("nc -u -l -p 53 & {}", httpd("local-only"));
    lab.hx_ok(
        &hx,
        &[
            "run",
            "-d",
            "--name",
            "u",
            "-p",
            "5353:53/udp",
            "-p",
            "127.0.0.1:8082:80",
            BUSYBOX,
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(
        lab.hx_ok(&hx, &["port", "u"]).stdout,
        "53/udp -> 0.0.0.0:5353\n80/tcp -> 127.0.0.1:8082\n"
    );
    // ps's publish= (host port), expose= (container port) and network= filters, docker's forms.
    for (filter, shown) in [
        ("publish=5353/udp", "u\n"),
        ("publish=5353", ""),
        ("publish=8000-8090", "u\n"),
        ("expose=80", "u\n"),
        ("expose=50-60/udp", "u\n"),
        ("expose=8082", ""),
        ("network=bridge", "u\n"),
        ("network=none", ""),
    ] {
        let r = lab.hx_ok(&hx, &["ps", "--filter", filter, "--format", "{{.Names}}"]);
        assert_eq!(r.stdout, shown, "{filter}");
    }
    let r = lab.hx(&hx, &["ps", "--filter", "publish=8080:80"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "hx: invalid filter 'publish=8080:80': should not contain ':'\n"
        )
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let body = loop {
        if let Some(b) = lab.fetch_from_host("http://127.0.0.1:8082/") {
            break b;
        }
        assert!(Instant::now() < deadline, "127.0.0.1:8082 did not answer");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(body, "local-only\n");
    // Published on 127.0.0.1 only: another machine cannot reach it.
    assert!(lab
        .fetch_from_client(&format!("http://{HOST_IP}:8082/"))
        .is_none());

    // A datagram from the client reaches the container's UDP listener (it prints it).
    let send = format!("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'datagram-from-client\\n', ('{HOST_IP}', 5353))");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &lab.client, "python3", "-c", &send]);
        assert_eq!(common::run_with_timeout(c, Duration::from_secs(10)).code, 0);
        if lab
            .hx_ok(&hx, &["logs", "u"])
            .stdout
            .contains("datagram-from-client")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the datagram never arrived");
        std::thread::sleep(Duration::from_millis(500));
    }
    lab.hx_ok(&hx, &["rm", "-f", "u"]);
    assert_nothing_left(&hx, &lab, 8082);
}

#[test]
fn hx0_avoids_routed_subnets_and_bridge_name_uses_an_existing_bridge() {
    let Some((hx, lab)) = lab() else { return };
    // Something on the host (podman, a VPN) routes part of 10.88.0.0/16 already.
    for args in [
        &["ip", "link", "add", "busy0", "type", "bridge"][..],
        &["ip", "addr", "add", "10.88.5.1/24", "dev", "busy0"],
        &["ip", "link", "set", "busy0", "up"],
        &["ip", "link", "add", "br1", "type", "bridge"],
        &["ip", "addr", "add", "172.30.0.1/24", "dev", "br1"],
    ] {
        assert_eq!(lab.in_host_run(args).code, 0, "{args:?}");
    }
    let show = "ip -o -4 addr show eth0 | awk '{print $4}'; ip route | grep default";
    let r = lab.hx_ok(&hx, &["run", "--rm", BUSYBOX, "sh", "-c", show]);
    assert_eq!(
        r.stdout.lines().next(),
        Some("10.89.0.2/16"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("default via 10.89.0.1"), "{}", r.stdout);

    let r = lab.hx_ok(
        &hx,
        &[
            "run",
            "--rm",
            "--network",
            "bridge=br1",
            BUSYBOX,
            "sh",
            "-c",
            show,
        ],
    );
    assert_eq!(
        r.stdout.lines().next(),
        Some("172.30.0.2/24"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("default via 172.30.0.1"), "{}", r.stdout);
    assert!(lab.container_links().is_empty());
}

#[test]
fn dns_and_add_host_flags() {
    let Some((hx, lab)) = lab() else { return };
    let r = lab.hx_ok(
        &hx,
        &[
            "run",
            "--rm",
            "--dns",
            "192.0.2.99",
            "--add-host",
            "db:10.1.2.3",
            BUSYBOX,
            "sh",
            "-c",
            "grep nameserver /etc/resolv.conf; grep -w db /etc/hosts",
        ],
    );
    assert_eq!(r.stdout, "nameserver 192.0.2.99\n10.1.2.3\tdb\n");
    let r = lab.hx(&hx, &["run", "--rm", "--add-host", "db", BUSYBOX, "true"]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (125, "hx: --add-host \"db\": use HOST:IP")
    );
}

/// Host services in the lab's host namespace: `loopback-secret` on 127.0.0.1:7001 only, and
/// `public` on every address at 7002. Killed on drop.
struct HostServices(std::process::Child);

impl HostServices {
    fn start(lab: &NetLab) -> HostServices {
        let code = "import socket, threading, sys
def serve(addr, body):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr); s.listen()
    def loop():
        while True:
            c, _ = s.accept(); c.sendall(body); c.close()
    threading.Thread(target=loop, daemon=True).start()
serve(('127.0.0.1', 7001), b'loopback-secret\\n')
serve(('0.0.0.0', 7002), b'public\\n')
print('ready', flush=True)
sys.stdin.read()";
        let mut child = lab
            .in_host("python3", &["-c", code])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "ready\n");
        HostServices(child)
    }
}

impl Drop for HostServices {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn guests_and_other_hosts_never_reach_the_hosts_loopback() {
    let Some((hx, lab)) = lab() else { return };
    let _services = HostServices::start(&lab);
    lab.hx_ok(
        &hx,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1:8082:80",
            BUSYBOX,
            "sh",
            "-c",
            &httpd("published"),
        ],
    );
    lab.wait_for_client(&format!("http://{HOST_IP}:8080/"), Duration::from_secs(90));
    assert_eq!(
        lab.fetch_from_host("http://127.0.0.1:8080/").as_deref(),
        Some("published\n")
    );
    assert_eq!(
        lab.fetch_from_host("http://127.0.0.1:8082/").as_deref(),
        Some("published\n")
    );

    // The attacker: a guest that sends 127.0.0.0/8 through its gateway (with its own loopback
    // address gone) and accepts replies from there. Every step must work, or the test proves
    // nothing.
    let attack = r#"gw=$(ip route | awk '/^default/ {print $3}')
ip addr del 127.0.0.1/8 dev lo && ip route add 127.0.0.0/8 via $gw dev eth0 &&
  echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet &&
  echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet && echo routed
echo "public:$(nc -w 3 $gw 7002 </dev/null)"
echo "hairpin:$(wget -q -T 3 -O - http://$gw:8080/)"
echo "loopback-published-via-gateway:$(wget -q -T 3 -O - http://$gw:8082/)"
echo "loopback-service:$(nc -w 3 127.0.0.1 7001 </dev/null)"
echo "loopback-service-0:$(nc -w 3 127.0.0.1 7002 </dev/null)"
echo "loopback-published:$(wget -q -T 3 -O - http://127.0.0.1:8082/)"
echo "published-via-loopback:$(wget -q -T 3 -O - http://127.0.0.1:8080/)"
"#;
    // --privileged: the attacker has every capability in its VM (NET_ADMIN for its routes).
    let r = lab.hx(
        &hx,
        &["run", "--rm", "--privileged", BUSYBOX, "sh", "-c", attack],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        [
            "routed",
            // What a container may reach: host services on every address, published ports of
            // the host (docker's hairpin) ...
            "public:public",
            "hairpin:published",
            // ... but nothing on the host's loopback, published or not.
            "loopback-published-via-gateway:",
            "loopback-service:",
            "loopback-service-0:",
            "loopback-published:",
            "published-via-loopback:",
        ],
        "{}",
        r.stderr
    );

    // Another host doing the same (127.0.0.0/8 routed to this host, replies from it accepted)
    // does not reach the port published on 127.0.0.1 either; the public one still answers.
    let client = |args: &[&str]| {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &lab.client]).args(args);
        let r = common::run_with_timeout(c, Duration::from_secs(30));
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    };
    client(&[
        "ip",
        "route",
        "add",
        "127.0.0.0/8",
        "via",
        HOST_IP,
        "table",
        "77",
    ]);
    client(&[
        "ip",
        "rule",
        "add",
        "pref",
        "10",
        "to",
        "127.0.0.0/8",
        "lookup",
        "77",
    ]);
    client(&["ip", "rule", "del", "pref", "0"]);
    client(&["ip", "rule", "add", "pref", "100", "lookup", "local"]);
    client(&["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"]);
    let veth = lab
        .in_client_run(&["ip", "-o", "link", "show", "type", "veth"])
        .stdout;
    let veth = veth
        .split(": ")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    client(&[
        "sysctl",
        "-qw",
        &format!("net.ipv4.conf.{veth}.route_localnet=1"),
    ]);
    assert_eq!(lab.fetch_from_client("http://127.0.0.1:8082/"), None);
    assert_eq!(lab.fetch_from_client("http://127.0.0.1:7001/"), None);
    assert_eq!(
        lab.fetch_from_client(&format!("http://{HOST_IP}:8080/"))
            .as_deref(),
        Some("published\n")
    );
    lab.hx_ok(&hx, &["rm", "-f", "web"]);
    assert_nothing_left(&hx, &lab, 8080);
}

#[test]
fn two_stores_on_one_bridge_share_one_address_pool() {
    let Some((a, mut lab)) = lab() else { return };
    let b = Hx::new();
    b.load_busybox();
    lab.adopt(&b);
    lab.hx_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            BUSYBOX,
            "sh",
            "-c",
            &httpd("store-a"),
        ],
    );
    lab.hx_ok(
        &b,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            BUSYBOX,
            "sh",
            "-c",
            &httpd("store-b"),
        ],
    );
    let (ia, ib) = (ip_of(&a, &lab, "srv"), ip_of(&b, &lab, "srv"));
    assert_ne!(ia, ib, "two stores handed out one address");
    let ips = |hx: &Hx| -> Vec<String> { lab.leases(hx).into_iter().map(|(ip, _)| ip).collect() };
    assert_eq!((ips(&a), ips(&b)), (vec![ia.clone()], vec![ib.clone()]));

    // Store A's container goes and A reconciles: B's lease stays, and A's next container
    // neither takes B's address nor loses the way to B's server.
    lab.hx_ok(&a, &["rm", "-f", "srv"]);
    lab.hx_ok(&a, &["ps", "-a"]);
    assert_eq!((ips(&a), ips(&b)), (vec![], vec![ib.clone()]));
    let r = lab.hx(&a, &["run", "--rm", BUSYBOX, "sh", "-c", &format!(
        "ip -o -4 addr show eth0 | awk '{{print $4}}'; for i in $(seq 1 60); do wget -q -O - http://{ib}/ && exit 0; sleep 1; done; exit 1")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_ne!(
        lines[0].split('/').next(),
        Some(ib.as_str()),
        "{}",
        r.stdout
    );
    assert_eq!(lines[1], "store-b");
    lab.hx_ok(&b, &["rm", "-f", "srv"]);
    assert_nothing_left(&a, &lab, 80);
    assert_eq!(lab.leases(&b), Vec::new());
}

/// Asks server argv[1] for name argv[2]: A and AAAA over UDP, A over TCP; prints
/// `PROTO TYPE RCODE ADDRESS|-` per answer.
const DNS_QUERIES: &str = r#"
import socket, struct, sys
def query(name, qtype):
    m = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        m += bytes([len(label)]) + label.encode()
    return m + b"\0" + struct.pack(">HH", qtype, 1)
def show(proto, kind, a):
    count = struct.unpack(">H", a[6:8])[0]
    print(proto, kind, a[3] & 15, ".".join(map(str, a[-4:])) if count else "-")
server, name = sys.argv[1], sys.argv[2]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
for kind, qtype in (("A", 1), ("AAAA", 28)):
    u.sendto(query(name, qtype), (server, 53))
    show("udp", kind, u.recv(4096))
t = socket.create_connection((server, 53), timeout=5)
m = query(name, 1)
t.sendall(struct.pack(">H", len(m)) + m)
n = struct.unpack(">H", t.recv(2))[0]
a = b""
while len(a) < n:
    a += t.recv(n - len(a))
show("tcp", "A", a)
"#;

/// The processes serving user networks' names for `hx`'s store.
fn resolvers(hx: &Hx) -> Vec<String> {
    let root = hx.root().to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(" __net-dns ") && c.contains(&root))
        .collect()
}

#[test]
fn user_networks_resolve_names_inside_and_isolate_between() {
    let Some((hx, lab)) = lab() else { return };
    let started = Instant::now();
    let a = lab
        .hx_ok(
            &hx,
            &[
                "network",
                "create",
                "--subnet",
                "10.201.0.0/24",
                "-l",
                "team=x",
                "neta",
            ],
        )
        .stdout;
    let a = a.trim().to_string();
    assert!(
        a.len() == 64 && a.bytes().all(|b| b.is_ascii_hexdigit()),
        "{a}"
    );
    let b = lab.hx_ok(&hx, &["network", "create", "netb"]).stdout;
    let b = b.trim().to_string();
    let r = lab.hx(&hx, &["network", "create", "neta"]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (1, "hx: network with name neta already exists")
    );
    let r = lab.hx(
        &hx,
        &["network", "create", "--subnet", "10.201.0.1/24", "x"],
    );
    assert_eq!(
        (r.code, r.stderr.trim()),
        (
            1,
            "hx: invalid subnet 10.201.0.1/24: it should be 10.201.0.0/24"
        )
    );

    // ls: docker's columns, the predefined networks first; -q, --filter, --format.
    let id_of = |n: &str| {
        lab.hx_ok(&hx, &["network", "inspect", "-f", "{{.Id}}", n])
            .stdout
            .trim()
            .to_string()
    };
    let (bridge, none) = (id_of("bridge"), id_of("none"));
    assert_eq!(
        lab.hx_ok(&hx, &["network", "ls"]).stdout,
        format!(
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             {}   bridge    bridge    local\n\
             {}   none      null      local\n\
             {}   neta      bridge    local\n\
             {}   netb      bridge    local\n",
            &bridge[..12],
            &none[..12],
            &a[..12],
            &b[..12]
        )
    );
    assert_eq!(
        lab.hx_ok(&hx, &["network", "ls", "-q", "--filter", "name=neta"])
            .stdout,
        format!("{}\n", &a[..12])
    );
    assert_eq!(
        lab.hx_ok(
            &hx,
            &[
                "network",
                "ls",
                "--filter",
                "label=team=x",
                "--format",
                "{{.Name}} {{.Driver}} {{.Labels}}"
            ]
        )
        .stdout,
        "neta bridge team=x\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.hx_ok(&hx, &["network", "inspect", "neta"]).stdout).unwrap();
    let n = &inspect[0];
    assert_eq!(
        (
            &n["Name"],
            &n["Id"],
            &n["Driver"],
            &n["EnableIPv6"],
            &n["Internal"]
        ),
        (
            &serde_json::json!("neta"),
            &serde_json::json!(a),
            &serde_json::json!("bridge"),
            &serde_json::json!(false),
            &serde_json::json!(false)
        )
    );
    assert_eq!(
        n["IPAM"]["Config"],
        serde_json::json!([{"Subnet": "10.201.0.0/24", "Gateway": "10.201.0.1"}])
    );
    assert_eq!(n["Labels"], serde_json::json!({"team": "x"}));
    assert_eq!(n["Containers"], serde_json::json!({}));

    // Two containers on neta find each other by name and alias; --ip is kept.
    lab.hx_ok(
        &hx,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "neta",
            "--ip",
            "10.201.0.50",
            "--network-alias",
            "db",
            "-p",
            "8080:80",
            BUSYBOX,
            "sh",
            "-c",
            &httpd("on-a"),
        ],
    );
    assert_eq!(
        lab.hx_ok(&hx, &["inspect", "-f", "{{.NetworkSettings.Networks.neta.IPAddress}} {{.NetworkSettings.Networks.neta.Aliases}}", "srv"]).stdout,
        "10.201.0.50 [db]\n"
    );
    assert_eq!(
        lab.hx_ok(
            &hx,
            &[
                "ps",
                "--filter",
                "network=neta",
                "--format",
                "{{.Names}} {{.Networks}}"
            ]
        )
        .stdout,
        "srv neta\n"
    );
    // Renamed: the network's resolver answers for the new name.
    lab.hx_ok(&hx, &["rename", "srv", "web"]);
    // Over UDP and TCP, asked from the client namespace plugged into neta's bridge.
    let (vh, vc) = (
        format!("hxq{}h", std::process::id()),
        format!("hxq{}c", std::process::id()),
    );
    assert_eq!(
        std::process::Command::new("ip")
            .args([
                "link",
                "add",
                &vh,
                "netns",
                &lab.host,
                "type",
                "veth",
                "peer",
                "name",
                &vc,
                "netns",
                &lab.client
            ])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    lab.in_host_run(&[
        "ip",
        "link",
        "set",
        &vh,
        "master",
        &format!("hxn-{}", &a[..11]),
        "up",
    ]);
    lab.in_client_run(&["ip", "addr", "add", "10.201.0.200/24", "dev", &vc]);
    lab.in_client_run(&["ip", "link", "set", &vc, "up"]);
    let asked = lab.in_client_run(&["python3", "-c", DNS_QUERIES, "10.201.0.1", "web"]);
    assert_eq!(
        asked.stdout, "udp A 0 10.201.0.50\nudp AAAA 0 -\ntcp A 0 10.201.0.50\n",
        "{}",
        asked.stderr
    );
    lab.in_host_run(&["ip", "link", "del", &vh]);
    // Published ports work as on hx0.
    assert_eq!(
        lab.wait_for_client(&format!("http://{HOST_IP}:8080/"), Duration::from_secs(60)),
        "on-a\n"
    );
    let r = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--network",
            "neta",
            "--ip",
            "10.201.0.50",
            BUSYBOX,
            "true",
        ],
    );
    assert_eq!(
        (r.code, r.stderr.trim()),
        (125, "hx: Address already in use: 10.201.0.50")
    );
    let r = lab.hx(&hx, &["run", "--rm", "--network", "neta", "--name", "cli", BUSYBOX, "sh", "-c",
        "nslookup srv >/dev/null 2>&1 || echo old-name-gone; \
         for n in web db; do for i in $(seq 1 20); do ping -c 1 -W 1 $n >/dev/null && echo ping-$n && break; done; done; \
         for i in $(seq 1 30); do wget -q -O - http://web/ && exit 0; sleep 0.5; done; exit 1"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "old-name-gone\nping-web\nping-db\non-a\n"),
        "{}",
        r.stderr
    );
    // From netb: neither its address nor its name.
    let r = lab.hx(&hx, &["run", "--rm", "--network", "netb", BUSYBOX, "sh", "-c",
        "ping -c 1 -W 2 10.201.0.50 >/dev/null && echo reached; wget -q -T 2 -O - http://10.201.0.50/ && echo fetched; \
         nslookup web >/dev/null 2>&1 && echo resolved; cat /etc/resolv.conf | grep nameserver"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("nameserver ") && !r.stdout.contains("10.201."),
        "netb's container reached neta's: {}",
        r.stdout
    );

    // A VM killed with nobody running hx: netb's resolver ends by itself.
    lab.hx_ok(
        &hx,
        &[
            "run",
            "-d",
            "--name",
            "tmp",
            "--network",
            "netb",
            BUSYBOX,
            "sleep",
            "300",
        ],
    );
    assert_eq!(
        resolvers(&hx).len(),
        2,
        "a resolver for each network in use"
    );
    let pid: i32 = lab
        .hx_ok(&hx, &["inspect", "-f", "{{.State.Pid}}", "tmp"])
        .stdout
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while resolvers(&hx).len() != 1 {
        assert!(
            Instant::now() < deadline,
            "netb's resolver outlived its last VM"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.hx_ok(&hx, &["rm", "tmp"]);

    // rm: refused while web runs on neta, and goes on with netb.
    let r = lab.hx(&hx, &["network", "rm", "neta", "netb"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.trim()),
        (
            1,
            "netb\n",
            format!("hx: error while removing network: network neta id {a} has active endpoints")
                .as_str()
        )
    );
    let r = lab.hx(&hx, &["network", "rm", "bridge"]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (
            1,
            "hx: bridge is a pre-defined network and cannot be removed"
        )
    );
    assert_eq!(resolvers(&hx).len(), 1, "one resolver for neta");
    lab.hx_ok(&hx, &["rm", "-f", "web"]);
    assert_eq!(resolvers(&hx), Vec::<String>::new(), "resolver left");
    assert_eq!(lab.hx_ok(&hx, &["network", "rm", "neta"]).stdout, "neta\n");
    let r = lab.hx(&hx, &["network", "inspect", "neta"]);
    assert_eq!((r.code, r.stderr.trim()), (1, "hx: network neta not found"));
    let links = lab.in_host_run(&["ip", "-o", "link", "show"]).stdout;
    assert!(!links.contains("hxn-"), "bridge left: {links}");
    let rules = lab
        .in_host_run(&["nft", "list", "table", "ip", "hx"])
        .stdout;
    assert!(!rules.contains("hxn-"), "rules left: {rules}");
    lab.hx_ok(&hx, &["network", "create", "netc"]);
    assert_eq!(
        lab.hx_ok(&hx, &["network", "prune", "-f"]).stdout,
        "Deleted Networks:\nnetc\n"
    );
    assert_nothing_left(&hx, &lab, 8080);
    assert!(!hx.root().join("networks").read_dir().unwrap().any(|_| true));
    eprintln!("user networks: {:?}", started.elapsed());
}

/// `hx network create --ipv6`: addresses, the default route and AAAA names over IPv6 between
/// two containers of one network, `--ip6`, inspect's fields, isolation from another `--ipv6`
/// network, `network connect --ip6`, IPv6 rules back after a flush, a restart keeping the
/// address, and nothing IPv6 left after `rm -f` and `network rm`. Four VM boots.
#[test]
fn ipv6_user_networks_reach_by_name_and_isolate() {
    let Some((hx, lab)) = lab() else { return };
    let started = Instant::now();
    let r = lab.hx(&hx, &["network", "create", "--subnet", "fd42:1::/64", "x"]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (
            1,
            "hx: --subnet fd42:1::/64 is an IPv6 subnet: add --ipv6 to give the network IPv6"
        )
    );
    let a = lab
        .hx_ok(
            &hx,
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "10.202.0.0/24",
                "--subnet",
                "fd42:1::/64",
                "v6a",
            ],
        )
        .stdout
        .trim()
        .to_string();
    let r = lab.hx(
        &hx,
        &[
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "fd42:1::/80",
            "y",
        ],
    );
    assert_eq!(
        (r.code, r.stderr.trim()),
        (
            1,
            "hx: invalid pool request: Pool overlaps with other one on this address space (fd42:1::/80)"
        )
    );
    let b = lab
        .hx_ok(&hx, &["network", "create", "--ipv6", "v6b"])
        .stdout
        .trim()
        .to_string();
    let (bridge_a, bridge_b) = (format!("hxn-{}", &a[..11]), format!("hxn-{}", &b[..11]));
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.hx_ok(&hx, &["network", "inspect", "v6a", "v6b"]).stdout)
            .unwrap();
    assert_eq!(inspect[0]["EnableIPv6"], serde_json::json!(true));
    assert_eq!(
        inspect[0]["IPAM"]["Config"],
        serde_json::json!([
            {"Subnet": "10.202.0.0/24", "Gateway": "10.202.0.1"},
            {"Subnet": "fd42:1::/64", "Gateway": "fd42:1::1"}
        ])
    );
    // v6b's subnet: a /64 of hx's unique local /48, its first address the gateway.
    let subnet_b = inspect[1]["IPAM"]["Config"][1]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    let gateway_b = inspect[1]["IPAM"]["Config"][1]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        subnet_b.starts_with("fd") && subnet_b.ends_with("::/64"),
        "{subnet_b}"
    );
    assert_eq!(
        gateway_b,
        subnet_b.replace("::/64", "::1"),
        "{}",
        inspect[1]
    );
    assert_eq!(
        lab.hx_ok(
            &hx,
            &[
                "network",
                "ls",
                "--filter",
                "name=v6",
                "--format",
                "{{.Name}} {{.IPv6}}"
            ]
        )
        .stdout,
        "v6a true\nv6b true\n"
    );
    let addrs = lab
        .in_host_run(&["ip", "-6", "-o", "addr", "show", "dev", &bridge_a])
        .stdout;
    assert!(addrs.contains("inet6 fd42:1::1/64"), "{addrs}");

    lab.hx_ok(
        &hx,
        &[
            "run",
            "-d",
            "--name",
            "srv6",
            "--network",
            "v6a",
            "--ip6",
            "fd42:1::50",
            BUSYBOX,
            "sh",
            "-c",
            &httpd("over-v6"),
        ],
    );
    let id = lab
        .hx_ok(&hx, &["inspect", "-f", "{{.Id}}", "srv6"])
        .stdout
        .trim()
        .to_string();
    assert_eq!(
        lab.hx_ok(&hx, &["inspect", "-f", "{{.NetworkSettings.Networks.v6a.GlobalIPv6Address}} {{.NetworkSettings.Networks.v6a.GlobalIPv6PrefixLen}} {{.NetworkSettings.Networks.v6a.IPv6Gateway}} {{.NetworkSettings.Networks.v6a.IPAddress}}", "srv6"]).stdout,
        "fd42:1::50 64 fd42:1::1 10.202.0.2\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.hx_ok(&hx, &["network", "inspect", "v6a"]).stdout).unwrap();
    assert_eq!(
        inspect[0]["Containers"][&id]["IPv6Address"],
        serde_json::json!("fd42:1::50/64")
    );
    let r = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--network",
            "v6b",
            "--ip6",
            "fd42:1::51",
            BUSYBOX,
            "true",
        ],
    );
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.contains("invalid --ip6 fd42:1::51"),
        "{}",
        r.stderr
    );

    // A neighbour put on v6a by `network connect --ip6`: its own address in the guest, the
    // default route, AAAA (and A) for the name, ping and HTTP over IPv6.
    lab.hx_ok(
        &hx,
        &[
            "create",
            "--name",
            "c6",
            "--network",
            "none",
            BUSYBOX,
            "sh",
            "-c",
            "ip -6 addr show dev eth0 | grep -o 'inet6 [^ ]* scope global'; \
         ip -6 route | grep -o 'default via [^ ]*'; \
         nslookup -type=AAAA srv6 | grep -o 'fd42:[0-9a-f:]*'; \
         nslookup -type=A srv6 | grep -o 'Address: *10\\.202\\.0\\.[0-9]*$' | grep -o '10\\..*'; \
         ping -6 -c 1 -W 5 srv6 >/dev/null && echo ping-srv6; \
         wget -q -T 5 -O - 'http://[fd42:1::50]/'",
        ],
    );
    for (bad, net) in [("fd42:1::1", "v6a"), ("fd42:1::60", "v6b")] {
        let r = lab.hx(&hx, &["network", "connect", "--ip6", bad, net, "c6"]);
        let want = format!(
            "hx: invalid --ip6 {bad}: not a container address of network {net}'s IPv6 subnet"
        );
        assert_eq!((r.code, r.stderr.trim()), (1, want.as_str()));
    }
    lab.hx_ok(
        &hx,
        &["network", "connect", "--ip6", "fd42:1::60", "v6a", "c6"],
    );
    let r = lab.hx(&hx, &["start", "-a", "c6"]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "inet6 fd42:1::60/64 scope global\ndefault via fd42:1::1\nfd42:1::50\n10.202.0.2\nping-srv6\nover-v6\n"
        ),
        "{}",
        r.stderr
    );
    lab.hx_ok(&hx, &["rm", "c6"]);
    // From v6b (which has IPv6 of its own, and the host forwards IPv6): neither srv6's
    // address nor its name.
    let r = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--network",
            "v6b",
            BUSYBOX,
            "sh",
            "-c",
            &format!(
                "ip -6 addr show dev eth0 | grep -c 'scope global'; \
         ping -6 -c 1 -W 5 {gateway_b} >/dev/null && echo own-gateway; \
         ping -6 -c 1 -W 2 fd42:1::50 >/dev/null && echo reached; \
         wget -q -T 2 -O - 'http://[fd42:1::50]/' && echo fetched; \
         nslookup -type=AAAA srv6 2>&1 | grep -c fd42:1::50"
            ),
        ],
    );
    assert_eq!(
        r.stdout, "1\nown-gateway\n0\n",
        "v6b's container reached v6a's: {}",
        r.stderr
    );
    let forwarding = lab
        .in_host_run(&["sysctl", "-n", "net.ipv6.conf.all.forwarding"])
        .stdout;
    assert_eq!(forwarding, "1\n", "isolation is what keeps them apart");

    let rules6 = lab
        .in_host_run(&["nft", "list", "table", "ip6", "hx"])
        .stdout;
    assert!(
        rules6.contains(&format!(
            "oifname \"{bridge_b}\" iifname != \"{bridge_b}\" iifname \"hxn-*\" drop"
        )),
        "{rules6}"
    );
    // A flushed ruleset: the next hx command puts the running network's IPv6 rules back.
    lab.in_host_run(&["nft", "flush", "ruleset"]);
    lab.hx_ok(&hx, &["ps"]);
    let rules6 = lab
        .in_host_run(&["nft", "list", "table", "ip6", "hx"])
        .stdout;
    assert!(
        rules6.contains(&format!("iifname \"{bridge_a}\" oifname \"hx0\" drop")),
        "{rules6}"
    );
    // Restarted: the same IPv6 address (its --ip6 is kept with the container).
    lab.hx_ok(&hx, &["restart", "-t", "1", "srv6"]);
    assert_eq!(
        lab.hx_ok(
            &hx,
            &[
                "inspect",
                "-f",
                "{{.NetworkSettings.GlobalIPv6Address}}",
                "srv6"
            ]
        )
        .stdout,
        "fd42:1::50\n"
    );

    // rm -f: its v6 lease goes; network rm: the bridge, its v6 address and rules.
    lab.hx_ok(&hx, &["rm", "-f", "srv6"]);
    let pool6 = format!(
        "/run/hx/ipam/net-{}/{bridge_a}/pool6.json",
        lab.host_netns_inode()
    );
    let leases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&pool6).unwrap()).unwrap();
    assert_eq!(leases["leases"], serde_json::json!({}), "v6 leases left");
    let rules6 = lab
        .in_host_run(&["nft", "list", "table", "ip6", "hx"])
        .stdout;
    assert!(rules6.contains(&bridge_a), "{rules6}");
    assert_eq!(
        lab.hx_ok(&hx, &["network", "rm", "v6a", "v6b"]).stdout,
        "v6a\nv6b\n"
    );
    let rules6 = lab
        .in_host_run(&["nft", "list", "table", "ip6", "hx"])
        .stdout;
    assert!(!rules6.contains("hxn-"), "IPv6 rules left: {rules6}");
    let addrs = lab.in_host_run(&["ip", "-6", "-o", "addr", "show"]).stdout;
    assert!(
        !addrs.contains("fd42:1::") && !addrs.contains(&gateway_b),
        "IPv6 addresses left: {addrs}"
    );
    let routes = lab.in_host_run(&["ip", "-6", "route", "show"]).stdout;
    assert!(!routes.contains("fd42:1::"), "IPv6 routes left: {routes}");
    assert!(!std::path::Path::new(&pool6).exists(), "v6 pool left");
    eprintln!("ipv6 user networks: {:?}", started.elapsed());
}
