//! `netns_link::adopt_link`, the Xen side of taking over someone else's interface, without
//! Xen: a "dom0" namespace holds a veth end named like a vif (`vif7.0`) whose other end stands
//! for the guest's netfront in a "guest" namespace, configured as the guest would be (the
//! container interface's address and MAC). adopt_link moves the vif from "dom0" (where netback
//! makes it) into the "container" namespace as `hxtap0` and mirrors it to that namespace's eth0, whose peer sits in a "peer" namespace: a ping from the
//! peer is answered by the guest. `detach` then leaves eth0 as it was.
use hx_engine::network::netns_link;
use std::path::Path;
use std::process::Command;

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

#[test]
fn adopt_link_mirrors_a_vif_to_the_containers_interface() {
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "network tests need root in CI"
        );
        eprintln!("SKIP: network namespaces need root");
        return;
    }
    let tag = std::process::id();
    let [dom0, ctr, peer, guest] = ["d", "c", "p", "g"].map(|s| format!("hxa-{tag}-{s}"));
    let _ns = Namespaces(vec![dom0.clone(), ctr.clone(), peer.clone(), guest.clone()]);
    for n in [&dom0, &ctr, &peer, &guest] {
        sh(&["ip", "netns", "add", n]);
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    let ip = |n: &str, args: &[&str]| sh(&[&["ip", "-n", n], args].concat());
    // Docker's side: eth0 in the container's namespace, its peer outside.
    sh(&[
        "ip", "link", "add", "eth0", "netns", &ctr, "type", "veth", "peer", "name", "peer0",
        "netns", &peer,
    ]);
    ip(&ctr, &["addr", "add", "10.80.0.2/24", "dev", "eth0"]);
    ip(&ctr, &["link", "set", "eth0", "up"]);
    ip(&peer, &["addr", "add", "10.80.0.1/24", "dev", "peer0"]);
    ip(&peer, &["link", "set", "peer0", "up"]);
    let brief = ip(&ctr, &["-br", "link", "show", "eth0"]);
    let mac = brief.split_whitespace().nth(2).unwrap().to_string();
    // Netback's side: the vif in dom0, the netfront (here a veth end) in the guest.
    sh(&[
        "ip", "link", "add", "vif7.0", "netns", &dom0, "type", "veth", "peer", "name", "front",
        "netns", &guest,
    ]);
    ip(&guest, &["link", "set", "front", "address", &mac]);
    ip(&guest, &["addr", "add", "10.80.0.2/24", "dev", "front"]);
    ip(&guest, &["link", "set", "front", "up"]);

    let ctr_path = format!("/run/netns/{ctr}");
    let dom0_path = format!("/run/netns/{dom0}");
    let info = netns_link::adopt_link(
        Path::new(&dom0_path),
        Path::new(&ctr_path),
        "eth0",
        "vif7.0",
        "hxtap0",
    )
    .unwrap();
    assert_eq!(info.mac, mac);
    assert_eq!(info.address.to_string(), "10.80.0.2");
    assert_eq!((info.prefix, info.gateway, info.mtu), (24, None, 1500));
    assert!(
        !ip(&dom0, &["-br", "link"]).contains("vif7.0"),
        "vif left in dom0"
    );
    assert!(
        ip(&ctr, &["-br", "link"]).contains("hxtap0"),
        "the vif is not in the container's namespace under its new name"
    );

    // busybox-static's ping (scripts/setup.sh installs it; iputils-ping is not required).
    let ping = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{peer}"))
        .args(["busybox", "ping", "-c", "1", "-W", "3", "10.80.0.2"])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );
    // The answer came from the guest: its stack saw the echo request, the container's did not.
    let echos = |n: &str| -> u64 {
        let snmp = sh(&[
            "nsenter",
            &format!("--net=/run/netns/{n}"),
            "cat",
            "/proc/net/snmp",
        ]);
        let icmp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Icmp:")).collect();
        let (names, values) = (icmp[0].split_whitespace(), icmp[1].split_whitespace());
        let (_, v) = names.zip(values).find(|(k, _)| *k == "InEchos").unwrap();
        v.parse().unwrap()
    };
    assert_eq!((echos(&guest), echos(&ctr)), (1, 0));

    netns_link::detach(Path::new(&ctr_path), "eth0", "hxtap0").unwrap();
    assert_eq!(
        ip(&ctr, &["-br", "link"])
            .lines()
            .filter(|l| l.starts_with("vif") || l.starts_with("hxtap0"))
            .count(),
        0
    );
    let qdisc = sh(&["tc", "-n", &ctr, "qdisc", "show", "dev", "eth0", "ingress"]);
    assert_eq!(qdisc.trim(), "");
    // A namespace that is gone already is not an error.
    netns_link::detach(Path::new("/run/netns/hxa-gone"), "eth0", "vif7.0").unwrap();
}
