//! Podman's own CLI (Debian's podman 4.3.1, rootful, conmon, CNI networking) with
//! `--runtime <target>/hx-runtime`: everything of podman's under a temp dir, inside a network
//! namespace the test made (common/podman.rs). busybox is `podman load`ed from the
//! docker-archive the docker test also loads.
mod common;
use common::docker::{busybox_archive, pids_mentioning, BUSYBOX};
use common::podman::Podman;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn hx_runtime() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hx")).with_file_name("hx-runtime")
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn podman_cli_with_hx_runtime() {
    let Some((kernel, init)) = common::guest_assets() else {
        return;
    };
    let Some(p) = Podman::new(&[("HX_KERNEL", &kernel), ("HX_INIT", &init)]) else {
        return;
    };
    let runtime = hx_runtime();
    assert!(
        runtime.is_file(),
        "{} is missing: cargo build --release -p hx-oci-runtime",
        runtime.display()
    );
    let rt = runtime.to_str().unwrap();
    let archive = busybox_archive(&p.dir);
    p.podman_ok(&["load", "-i", archive.to_str().unwrap()]);
    let mounts = p.mounts();
    let run = |args: &[&str]| {
        let mut v = vec!["--runtime", rt, "run"];
        v.extend_from_slice(args);
        p.podman(&v)
    };

    // Output and exit code; the guest's eth0 has the CNI network's address.
    let t0 = Instant::now();
    let r = run(&[
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "echo hi; ip -4 -o addr show eth0 | grep -c 'inet 10\\.99\\.0\\.'; exit 3",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (3, "hi\n1\n"), "{}", r.stderr);
    eprintln!("podman run --rm busybox (exit 3): {:?}", t0.elapsed());

    // -d with -p 8080:80 (CNI's portmap), podman logs, podman exec, podman stop.
    let r = run(&[
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        BUSYBOX,
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; trap 'exit 7' TERM; httpd -p 80 -h /etc; \
         while true; do sleep 1; done",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    wait_until("podman logs", Duration::from_secs(60), || {
        let l = p.podman_ok(&["logs", "web"]);
        l.stdout == "to-stdout\n" && l.stderr == "to-stderr\n"
    });
    let hostname = p.podman_ok(&["inspect", "-f", "{{.Config.Hostname}}", "web"]);
    let mut body = None;
    wait_until("-p 8080:80", Duration::from_secs(60), || {
        let r = p.in_netns(&["curl", "-sf", "-m", "3", "http://127.0.0.1:8080/hostname"]);
        body = (r.code == 0).then_some(r.stdout);
        body.is_some()
    });
    assert_eq!(body.unwrap().trim(), hostname.stdout.trim());
    let r = p.podman(&["exec", "web", "sh", "-c", "cat /etc/hostname; exit 5"]);
    assert_eq!(
        (r.code, r.stdout.trim()),
        (5, hostname.stdout.trim()),
        "{}",
        r.stderr
    );
    let t0 = Instant::now();
    p.podman_ok(&["stop", "-t", "10", "web"]);
    assert!(t0.elapsed() < Duration::from_secs(10), "the TERM trap ran");
    let code = p.podman_ok(&["inspect", "-f", "{{.State.ExitCode}}", "web"]);
    assert_eq!(code.stdout.trim(), "7");

    // A user network (`podman network create`: CNI with the dnsname plugin, which Debian's
    // podman adds when installed): containers resolve each other by name and by
    // --network-alias through its dnsmasq; a container on another network resolves neither.
    let net = p.user_network();
    p.podman_ok(&["network", "create", "--subnet", "10.98.0.0/24", &net]);
    let r = run(&[
        "-d",
        "--name",
        "db",
        "--network",
        &net,
        "--network-alias",
        "database",
        BUSYBOX,
        "sh",
        "-c",
        "httpd -p 80 -h /etc; while true; do sleep 1; done",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let db_host = p.podman_ok(&["inspect", "-f", "{{.Config.Hostname}}", "db"]);
    let r = run(&[
        "--rm",
        "--network",
        &net,
        BUSYBOX,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -T 3 -O- http://db/hostname && break; \
         sleep 1; done; echo; wget -q -T 3 -O- http://database/hostname; echo; \
         grep -c '^search dns.podman' /etc/resolv.conf",
    ]);
    let want = format!("{0}\n{0}\n1\n", db_host.stdout.trim());
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, want.as_str()),
        "{}",
        r.stderr
    );
    let r = run(&[
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "nslookup db.dns.podman && exit 10; nslookup database && exit 11; echo unresolved",
    ]);
    assert_eq!(
        (r.code, r.stdout.trim_end().lines().last()),
        (0, Some("unresolved")),
        "db resolved from network hxtest: {}{}",
        r.stdout,
        r.stderr
    );
    p.podman_ok(&["rm", "-f", "-t", "0", "db"]);
    p.podman_ok(&["network", "rm", &net]);
    let dns_dir = Path::new("/run/containers/cni/dnsname").join(&net);
    assert!(!dns_dir.exists(), "{} left", dns_dir.display());
    assert_eq!(pids_mentioning(&dns_dir), Vec::<i32>::new(), "dnsmasq left");

    // podman rm: no container, VM, mount, process, network namespace or interface left.
    p.podman_ok(&["rm", "web"]);
    assert_eq!(p.podman_ok(&["ps", "-aq"]).stdout, "");
    assert_eq!(p.mounts(), mounts, "mounts left");
    assert_eq!(p.processes(), Vec::<i32>::new(), "processes left");
    let links = p.in_netns(&["ip", "-br", "link"]).stdout;
    assert!(
        !links
            .lines()
            .any(|l| l.starts_with("veth") || l.starts_with("hx")),
        "interfaces left: {links}"
    );
    let r = p.in_netns(&["curl", "-sf", "-m", "3", "http://127.0.0.1:8080/"]);
    assert_ne!(r.code, 0, "8080 still answers");
}
