//! A guest on an interface of a network namespace hx did not make — what docker hands an OCI
//! runtime (its veth `eth0` in the container's namespace) — through `--network ns:PATH`
//! (network/netns_link.rs): the test makes a "container" namespace whose eth0 is one end of a
//! veth pair, the other end in a "peer" namespace; a real guest takes eth0 over and answers
//! HTTP from the peer, reaches a network behind the gateway, uses eth0's MAC, and `hx rm -f`
//! leaves the namespace as it was.
mod common;
use common::{qemu_pids_for, Hx, Run, BUSYBOX};
use std::process::Command;
use std::time::{Duration, Instant};

const CTR_IP: &str = "10.78.0.2";
const GATEWAY: &str = "10.78.0.1";
/// Behind the gateway: only the default route leads there.
const BEYOND: &str = "10.79.0.1";

/// The second network (eth1, peer2): its gateway leads to BEYOND2 only when the namespace's
/// default route goes through eth1.
const CTR_IP2: &str = "10.77.0.2";
const GATEWAY2: &str = "10.77.0.1";
const BEYOND2: &str = "10.76.0.1";

struct Namespaces {
    ctr: String,
    peer: String,
    /// `second`'s peer, when the container has an eth1.
    peer2: Option<String>,
    root: std::path::PathBuf,
}

fn sh(args: &[&str]) -> Run {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    let r = Run::from(out);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    r
}

/// Distinct names for each test's namespaces and veths (the tests of this file run at once).
fn unique_tag() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{}{n}", std::process::id())
}

impl Namespaces {
    fn new(hx: &Hx) -> Namespaces {
        let tag = unique_tag();
        let ns = Namespaces {
            ctr: format!("hxl-{tag}-c"),
            peer: format!("hxl-{tag}-p"),
            peer2: None,
            root: hx.root().to_path_buf(),
        };
        sh(&["ip", "netns", "add", &ns.ctr]);
        sh(&["ip", "netns", "add", &ns.peer]);
        let peer_if = format!("hxl{tag}p");
        sh(&[
            "ip", "link", "add", "eth0", "netns", &ns.ctr, "type", "veth", "peer", "name",
            &peer_if, "netns", &ns.peer,
        ]);
        let ctr = |args: &[&str]| sh(&[&["ip", "-n", &ns.ctr], args].concat());
        let peer = |args: &[&str]| sh(&[&["ip", "-n", &ns.peer], args].concat());
        ctr(&["addr", "add", &format!("{CTR_IP}/24"), "dev", "eth0"]);
        ctr(&["link", "set", "eth0", "up"]);
        ctr(&["link", "set", "lo", "up"]);
        ctr(&["route", "add", "default", "via", GATEWAY]);
        peer(&["addr", "add", &format!("{GATEWAY}/24"), "dev", &peer_if]);
        peer(&["addr", "add", &format!("{BEYOND}/32"), "dev", "lo"]);
        peer(&["link", "set", &peer_if, "up"]);
        peer(&["link", "set", "lo", "up"]);
        ns
    }

    /// A second network: eth1 to a second peer, and the namespace's default route moved to
    /// eth1's gateway (docker puts it on one of a container's networks, not always eth0's).
    fn second(&mut self) {
        let tag = unique_tag();
        let peer2 = format!("hxl-{tag}-q");
        sh(&["ip", "netns", "add", &peer2]);
        self.peer2 = Some(peer2.clone());
        let peer_if = format!("hxl{tag}q");
        sh(&[
            "ip", "link", "add", "eth1", "netns", &self.ctr, "type", "veth", "peer", "name",
            &peer_if, "netns", &peer2,
        ]);
        let ctr = |args: &[&str]| sh(&[&["ip", "-n", &self.ctr], args].concat());
        let peer = |args: &[&str]| sh(&[&["ip", "-n", &peer2], args].concat());
        ctr(&["addr", "add", &format!("{CTR_IP2}/24"), "dev", "eth1"]);
        ctr(&["link", "set", "eth1", "up"]);
        ctr(&["route", "replace", "default", "via", GATEWAY2]);
        peer(&["addr", "add", &format!("{GATEWAY2}/24"), "dev", &peer_if]);
        peer(&["addr", "add", &format!("{BEYOND2}/32"), "dev", "lo"]);
        peer(&["link", "set", &peer_if, "up"]);
        peer(&["link", "set", "lo", "up"]);
    }

    fn in_ns(&self, ns: &str, args: &[&str]) -> Run {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{ns}")).args(args);
        common::run_with_timeout(c, Duration::from_secs(30))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for pid in qemu_pids_for(&self.root) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for ns in [&self.ctr, &self.peer].into_iter().chain(&self.peer2) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn a_guest_takes_over_an_interface_of_another_namespace() {
    let Some(hx) = root_and_guest() else { return };
    let ns = Namespaces::new(&hx);
    // (Not /sys/class/net: nsenter keeps the root namespace's /sys.)
    let brief = ns
        .in_ns(&ns.ctr, &["ip", "-br", "link", "show", "eth0"])
        .stdout;
    let mac = brief.split_whitespace().nth(2).unwrap().to_string();
    let netns = format!("ns:/run/netns/{}", ns.ctr);

    // Refused before anything is made: a namespace without eth0, -p (docker publishes).
    let r = hx.run(&[
        "run",
        "--rm",
        "--network",
        &format!("ns:/run/netns/{}", ns.peer),
        BUSYBOX,
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("eth0"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    let r = hx.run(&[
        "run",
        "--rm",
        "--network",
        &netns,
        "-p",
        "8080:80",
        BUSYBOX,
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("-p/-P cannot be used with --network ns:PATH"),
        "{}",
        r.stderr
    );
    assert_eq!(hx.run(&["ps", "-aq"]).stdout, "");

    hx.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        &netns,
        BUSYBOX,
        "sh",
        "-c",
        "mkdir /www && echo hello-netns > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    await_http(&ns, &ns.peer, &format!("http://{CTR_IP}/"), "hello-netns\n");
    // The guest answered ARP with eth0's MAC.
    let neigh = ns.in_ns(&ns.peer, &["ip", "neigh", "show", CTR_IP]).stdout;
    assert!(neigh.contains(mac.trim()), "{neigh} (eth0 is {mac})");
    // Its address, prefix and default route are eth0's and the namespace's.
    let r = hx.run(&["exec", "web", "ping", "-c", "1", "-W", "5", BEYOND]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let inspect: serde_json::Value =
        serde_json::from_str(&hx.ok(&["inspect", "web"]).stdout).unwrap();
    assert_eq!(inspect[0]["NetworkSettings"]["IPAddress"], CTR_IP);
    let shown = ns.in_ns(&ns.ctr, &["tc", "qdisc", "show", "dev", "eth0", "ingress"]);
    assert!(shown.stdout.contains("ingress"), "{}", shown.stdout);

    hx.ok(&["rm", "-f", "web"]);
    assert_eq!(qemu_pids_for(hx.root()), Vec::<i32>::new());
    let links = ns.in_ns(&ns.ctr, &["ip", "-br", "link"]).stdout;
    assert!(!links.contains("hxtap"), "{links}");
    let shown = ns.in_ns(&ns.ctr, &["tc", "qdisc", "show", "dev", "eth0", "ingress"]);
    assert_eq!(shown.stdout.trim(), "", "mirroring left on eth0");
    let addr = ns
        .in_ns(&ns.ctr, &["ip", "-br", "-4", "addr", "show", "eth0"])
        .stdout;
    assert!(addr.contains(&format!("{CTR_IP}/24")), "{addr}");
}

/// hx with busybox loaded, when this is root with a guest to boot. Not root: a skip, except
/// in CI, where it fails.
fn root_and_guest() -> Option<Hx> {
    if !common::netns::root_or_skip() {
        return None;
    }
    Hx::with_busybox()
}

/// Waits until `url` answers from namespace `from` with `body`.
fn await_http(ns: &Namespaces, from: &str, url: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = ns.in_ns(from, &["curl", "-sf", "-m", "3", url]);
        if r.code == 0 {
            assert_eq!(r.stdout, body);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer from {from}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A container on two networks (what docker hands an OCI runtime for `docker network connect`
/// before start, or a compose service with two networks): the guest gets a NIC per interface,
/// named as in the namespace, with its address and MAC, and the default route where the
/// namespace has it.
#[test]
fn a_guest_takes_over_every_interface_of_the_namespace() {
    let Some(hx) = root_and_guest() else { return };
    let mut ns = Namespaces::new(&hx);
    ns.second();
    let peer2 = ns.peer2.clone().unwrap();
    let mac_of = |dev: &str| {
        let brief = ns
            .in_ns(&ns.ctr, &["ip", "-br", "link", "show", dev])
            .stdout;
        brief.split_whitespace().nth(2).unwrap().to_string()
    };
    let (mac0, mac1) = (mac_of("eth0"), mac_of("eth1"));
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "two",
        "--network",
        &format!("ns:/run/netns/{}", ns.ctr),
        BUSYBOX,
        "sh",
        "-c",
        "mkdir /www && echo hello-both > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    await_http(&ns, &ns.peer, &format!("http://{CTR_IP}/"), "hello-both\n");
    await_http(&ns, &peer2, &format!("http://{CTR_IP2}/"), "hello-both\n");
    // Named as in the namespace, each with its MAC and address.
    for (dev, mac, ip) in [("eth0", &mac0, CTR_IP), ("eth1", &mac1, CTR_IP2)] {
        let shown = hx
            .ok(&["exec", "two", "ip", "addr", "show", "dev", dev])
            .stdout;
        assert!(
            shown.contains(&format!("inet {ip}/24")),
            "{dev} {ip}: {shown}"
        );
        let link = hx.ok(&[
            "exec",
            "two",
            "cat",
            &format!("/sys/class/net/{dev}/address"),
        ]);
        assert_eq!(link.stdout.trim(), mac.to_lowercase(), "{dev}");
    }
    // The default route is eth1's (BEYOND2 is only behind it); BEYOND, only behind eth0's
    // gateway, is unreachable.
    let r = hx.run(&["exec", "two", "ping", "-c", "1", "-W", "5", BEYOND2]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = hx.run(&["exec", "two", "ping", "-c", "1", "-W", "2", BEYOND]);
    assert_ne!(r.code, 0, "{}{}", r.stdout, r.stderr);

    hx.ok(&["rm", "-f", "two"]);
    assert_eq!(qemu_pids_for(hx.root()), Vec::<i32>::new());
    let links = ns.in_ns(&ns.ctr, &["ip", "-br", "link"]).stdout;
    assert!(!links.contains("hxtap"), "{links}");
    for dev in ["eth0", "eth1"] {
        let shown = ns.in_ns(&ns.ctr, &["tc", "qdisc", "show", "dev", dev, "ingress"]);
        assert_eq!(shown.stdout.trim(), "", "mirroring left on {dev}");
    }
}
