//! Warm start on QEMU (docs/warm-start.md): containers restored from a template snapshot behave
//! like cold ones, share nothing, and templates follow pv-init. Real kernel, pv-init and QEMU.
mod common;
use common::netns::{NetLab, HOST_IP};
use common::{run_with_timeout, wait_with_timeout, Hx, Run, BUSYBOX};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn run(hx: &Hx, templates: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = hx.cmd(args);
    c.env("HX_TEMPLATE_DIR", templates);
    for (k, v) in env {
        c.env(k, v);
    }
    run_with_timeout(c, Duration::from_secs(180))
}

/// What the workload prints: output on both streams, the exit code, whether a file from an
/// earlier container is there, and whether the guest is a template's copy.
const PROBE: &str = "echo out; echo err >&2; \
    if [ -e /root/mark ]; then echo mark-present; else echo mark-absent; fi; \
    echo written > /root/mark; \
    grep -q hx.warm=1 /proc/cmdline && echo warm || echo cold; \
    head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; exit 3";

#[test]
fn warm_containers_behave_like_cold_ones_and_share_nothing() {
    let Some(hx) = Hx::with_busybox() else { return };
    let templates = tempfile::tempdir().unwrap();
    let t = templates.path();
    let cold = run(
        &hx,
        t,
        &[("HX_WARM", "off")],
        &["run", "--rm", BUSYBOX, "sh", "-c", PROBE],
    );
    let warm1 = run(&hx, t, &[], &["run", "--rm", BUSYBOX, "sh", "-c", PROBE]);
    let warm2 = run(&hx, t, &[], &["run", "--rm", BUSYBOX, "sh", "-c", PROBE]);
    for (what, r) in [("cold", &cold), ("warm", &warm1), ("warm", &warm2)] {
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(r.code, 3, "{what}: {}", r.stderr);
        assert_eq!(r.stderr, "err\n", "{what}");
        assert_eq!(
            lines[..3],
            ["out", "mark-absent", what],
            "{what}: {}",
            r.stdout
        );
    }
    // Two copies of one snapshot draw different random numbers (pv-init reseeds at go).
    let random = |r: &Run| r.stdout.lines().nth(3).unwrap_or_default().to_string();
    assert_eq!(random(&warm1).len(), 32, "{}", warm1.stdout);
    assert_ne!(random(&warm1), random(&warm2));
    // The cold run made no template; the first warm one did.
    let ls = run(&hx, t, &[], &["system", "template", "ls", "-q"]);
    assert_eq!(ls.stdout.lines().count(), 1, "{}", ls.stdout);
}

/// A pod's VM restored from a template of its own shape (`+pod`: the members' SCSI bus and
/// 9p exports) runs members as a cold one does: their disks hot-plugged after the restore,
/// a host directory through the members export, each its own root, exit codes; two warm
/// pods draw different random numbers.
#[test]
fn warm_pods_behave_like_cold_ones_and_share_nothing() {
    let Some(hx) = Hx::with_busybox() else { return };
    let templates = tempfile::tempdir().unwrap();
    let t = templates.path();
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("greeting"), "from-host\n").unwrap();
    let volume = format!("{}:/data:ro", host_dir.path().display());
    let mut randoms = Vec::new();
    for (pod, env, what) in [
        ("pc", &[("HX_WARM", "off")][..], "cold"),
        ("pw1", &[][..], "warm"),
        ("pw2", &[][..], "warm"),
    ] {
        let made = run(
            &hx,
            t,
            env,
            &["pod", "create", "--name", pod, "--network", "none"],
        );
        assert_eq!(made.code, 0, "{pod}: {}", made.stderr);
        let first = run(
            &hx,
            t,
            env,
            &[
                "run", "--rm", "--pod", pod, "-v", &volume, BUSYBOX, "sh", "-c", PROBE,
            ],
        );
        let lines: Vec<&str> = first.stdout.lines().collect();
        assert_eq!((first.code, first.stderr.as_str()), (3, "err\n"), "{pod}");
        assert_eq!(
            lines[..3],
            ["out", "mark-absent", what],
            "{pod}: {}",
            first.stdout
        );
        randoms.push(lines.get(3).unwrap_or(&"").to_string());
        let second = run(
            &hx,
            t,
            env,
            &[
                "run",
                "--rm",
                "--pod",
                pod,
                "-v",
                &volume,
                BUSYBOX,
                "sh",
                "-c",
                "test -e /root/mark && echo mark-present || echo mark-absent; \
                 cat /data/greeting; hostname; exit 4",
            ],
        );
        assert_eq!(
            (second.code, second.stdout.as_str()),
            (4, format!("mark-absent\nfrom-host\n{pod}\n").as_str()),
            "{pod}: {}",
            second.stderr
        );
        let rm = run(&hx, t, &[], &["pod", "rm", "-f", pod]);
        assert_eq!(rm.code, 0, "{pod}: {}", rm.stderr);
    }
    assert_eq!(randoms[1].len(), 32, "{randoms:?}");
    assert_ne!(randoms[1], randoms[2]);
    // One template, the pod VM's shape (the cold pod made none).
    let ls = run(&hx, t, &[], &["system", "template", "ls"]);
    let lines: Vec<&str> = ls.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 1, "{}", ls.stdout);
    assert!(
        lines[0].contains("+pod") && lines[0].contains("256M"),
        "{}",
        ls.stdout
    );
    assert_eq!(run(&hx, t, &[], &["ps", "-aq"]).stdout, "");
}

#[test]
fn templates_follow_pv_init_and_are_listed_and_removed() {
    let Some(hx) = Hx::with_busybox() else { return };
    let templates = tempfile::tempdir().unwrap();
    let t = templates.path();
    let ok = run(&hx, t, &[], &["run", "--rm", BUSYBOX, "true"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let first = run(&hx, t, &[], &["system", "template", "ls", "-q"]).stdout;
    assert_eq!(first.lines().count(), 1, "{first}");

    // A pv-init that differs by one trailing byte (ELF ignores it) is another pv-init.
    let init = std::env::var("HX_INIT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| common::guest_assets().unwrap().1);
    let changed = t.join("pv-init-changed");
    let mut bytes = std::fs::read(&init).unwrap();
    bytes.push(0);
    std::fs::write(&changed, bytes).unwrap();
    let changed_init = changed.to_str().unwrap();
    let r = run(
        &hx,
        t,
        &[("HX_INIT", changed_init)],
        &[
            "run",
            "--rm",
            BUSYBOX,
            "sh",
            "-c",
            "grep -c hx.warm=1 /proc/cmdline",
        ],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "1\n"), "{}", r.stderr);
    let ls = run(&hx, t, &[], &["system", "template", "ls"]);
    assert_eq!(ls.code, 0);
    let lines: Vec<&str> = ls.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two templates: {}", ls.stdout);
    assert!(lines[0].starts_with("KEY "), "{}", ls.stdout);
    for l in &lines[1..] {
        assert!(l.contains("128M") && l.contains("ready"), "{l}");
    }
    // prune keeps the newest of the shape: the changed pv-init's.
    let pruned = run(&hx, t, &[], &["system", "template", "prune"]);
    assert_eq!((pruned.code, pruned.stdout.as_str()), (0, first.as_str()));
    let left = run(&hx, t, &[], &["system", "template", "ls", "-q"]).stdout;
    assert_eq!(left.lines().count(), 1);
    assert_ne!(left, first);

    let key = left.trim();
    let rm = run(&hx, t, &[], &["system", "template", "rm", key]);
    assert_eq!((rm.code, rm.stdout.trim()), (0, key), "{}", rm.stderr);
    let again = run(&hx, t, &[], &["system", "template", "rm", key]);
    assert_eq!(again.code, 1);
    assert_eq!(again.stderr, format!("Error: no such template: {key}\n"));
    let bad = run(&hx, t, &[], &["system", "template", "rm", "../x"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("not a template key"), "{}", bad.stderr);
    assert_eq!(
        run(&hx, t, &[], &["system", "template", "ls", "-q"]).stdout,
        ""
    );
    assert_eq!(
        std::fs::read_dir(t)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count(),
        0
    );
}

#[test]
fn a_killed_template_build_leaves_nothing_behind() {
    let Some(hx) = Hx::with_busybox() else { return };
    let templates = tempfile::tempdir().unwrap();
    let t = templates.path();
    let mut c = hx.cmd(&["run", "--rm", BUSYBOX, "true"]);
    c.env("HX_TEMPLATE_DIR", t)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let building = || {
        std::fs::read_dir(t)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".new-"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !building() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(building(), "no template build started");
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = std::time::Instant::now() + Duration::from_secs(10);
    while !common::qemu_cmdlines_for(t).is_empty() && std::time::Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        common::qemu_cmdlines_for(t).is_empty(),
        "the template's QEMU outlived hx"
    );
    let ps = hx.ok(&["ps", "-aq"]);
    assert_eq!(ps.stdout, "");
    // The next build, even of another template (a VM of another size), removes what the
    // killed one left.
    let other = run(&hx, t, &[], &["run", "--rm", "-m", "96m", BUSYBOX, "true"]);
    assert_eq!(other.code, 0, "{}", other.stderr);
    assert!(
        !building(),
        "a killed build's directory outlived the next build"
    );
    let pruned = run(&hx, t, &[], &["system", "template", "prune"]);
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    let left: Vec<String> = std::fs::read_dir(t)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    // Only the finished template of the second build, which prune keeps.
    let listed = run(&hx, t, &[], &["system", "template", "ls", "-q"]).stdout;
    assert_eq!(left, listed.lines().collect::<Vec<_>>(), "{left:?}");
    assert_eq!(left.len(), 1, "{left:?}");
}

/// `cmd` with `input` on its stdin (written while its output is read).
fn feed(mut cmd: Command, input: &[u8]) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let r = wait_with_timeout(child, Duration::from_secs(180));
    let _ = writer.join();
    r
}

/// What a web container serves: its name, whether its guest is a template's copy, whether a
/// file from another container is in its writable layer.
fn web(name: &str) -> String {
    format!(
        "mkdir /w; {{ echo {name}; grep -q hx.warm=1 /proc/cmdline && echo warm || echo cold; \
         [ -e /root/mark ] && echo mark-present || echo mark-absent; }} > /w/index.html; \
         echo {name} > /root/mark; exec httpd -f -p 80 -h /w"
    )
}

#[test]
fn warm_containers_on_the_network_answer_their_published_ports() {
    let Some(hx) = Hx::with_busybox() else { return };
    let Some(lab) = NetLab::new(&hx) else { return };
    let templates = tempfile::tempdir().unwrap();
    let hx_in_lab = |warm: bool, args: &[&str]| {
        let mut c = lab.hx_cmd(&hx, args);
        c.env("HX_TEMPLATE_DIR", templates.path());
        if !warm {
            c.env("HX_WARM", "off");
        }
        let r = run_with_timeout(c, Duration::from_secs(180));
        assert_eq!(r.code, 0, "hx {args:?}: {}{}", r.stdout, r.stderr);
        r
    };
    // `hx run -d -p` like `docker run -d -p 8080:80 nginx`: cold, then two warm copies at once
    // on the same bridge (each must take its own MAC, else one would not answer).
    for (warm, name, port) in [
        (false, "cold", "8090"),
        (true, "w1", "8091"),
        (true, "w2", "8092"),
    ] {
        let publish = format!("{port}:80");
        hx_in_lab(
            warm,
            &[
                "run",
                "-d",
                "--name",
                name,
                "-p",
                &publish,
                BUSYBOX,
                "sh",
                "-c",
                &web(name),
            ],
        );
    }
    for (name, port, how) in [
        ("cold", 8090, "cold"),
        ("w1", 8091, "warm"),
        ("w2", 8092, "warm"),
    ] {
        let url = format!("http://{HOST_IP}:{port}/");
        assert_eq!(
            lab.wait_for_client(&url, Duration::from_secs(90)),
            format!("{name}\n{how}\nmark-absent\n"),
            "{name}"
        );
    }
    let mac =
        |name: &str| hx_in_lab(true, &["exec", name, "cat", "/sys/class/net/eth0/address"]).stdout;
    let (m1, m2) = (mac("w1"), mac("w2"));
    assert_ne!(m1, m2);
    assert!(
        m1.starts_with("02:42:") && m2.starts_with("02:42:"),
        "{m1} {m2}"
    );
    let ls = hx_in_lab(true, &["system", "template", "ls"]).stdout;
    assert!(
        ls.contains("ro,ro,rw+net "),
        "one template, of the -d -p shape: {ls}"
    );
    assert_eq!(ls.lines().count(), 2, "{ls}");
    hx_in_lab(true, &["rm", "-f", "cold", "w1", "w2"]);
    assert_eq!(lab.publish_rules(), Vec::<String>::new(), "port rules left");
    assert_eq!(lab.container_links(), Vec::<String>::new(), "taps left");
    assert_eq!(common::qemu_processes_for(hx.root()), 0);
    assert!(common::qemu_cmdlines_for(templates.path()).is_empty());
}

/// `-i`, a host directory, a named volume and a writable layer: the workload reads stdin and
/// both volumes, writes to them, and reports whether it is a template's copy.
const VOLUMES_PROBE: &str = "cat; cat /data/in; echo $0 > /data/out-$0; \
    [ -e /vol/a ] && echo vol-has-a || echo vol-no-a; echo $0 > /vol/$0; echo err >&2; \
    [ -e /root/mark ] && echo mark-present || echo mark-absent; echo $0 > /root/mark; \
    grep -q hx.warm=1 /proc/cmdline && echo warm || echo cold; exit 3";

#[test]
fn warm_interactive_containers_with_volumes_match_cold_ones_and_start_again() {
    let Some(hx) = Hx::with_busybox() else { return };
    let templates = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in"), "from-host\n").unwrap();
    let bind = format!("{}:/data", data.path().display());
    let hx_with = |warm: bool, args: &[&str], input: &[u8]| {
        let mut c = hx.cmd(args);
        c.env("HX_TEMPLATE_DIR", templates.path());
        if !warm {
            c.env("HX_WARM", "off");
        }
        feed(c, input)
    };
    let run = |warm: bool, name: &str, label: &str, input: &[u8]| {
        hx_with(
            warm,
            &[
                "run",
                "-i",
                "--name",
                name,
                "-v",
                &bind,
                "-v",
                "warmvol:/vol",
                BUSYBOX,
                "sh",
                "-c",
                VOLUMES_PROBE,
                label,
            ],
            input,
        )
    };
    let cold = run(false, "c", "a", b"typed-a\n");
    let warm = run(true, "w", "b", b"typed-b\n");
    assert_eq!((cold.code, cold.stderr.as_str()), (3, "err\n"));
    assert_eq!((warm.code, warm.stderr.as_str()), (3, "err\n"));
    assert_eq!(
        cold.stdout,
        "typed-a\nfrom-host\nvol-no-a\nmark-absent\ncold\n"
    );
    // The warm one sees what the cold one left in the named volume, not in its own layer.
    assert_eq!(
        warm.stdout,
        "typed-b\nfrom-host\nvol-has-a\nmark-absent\nwarm\n"
    );
    for label in ["a", "b"] {
        let out = std::fs::read_to_string(data.path().join(format!("out-{label}"))).unwrap();
        assert_eq!(out, format!("{label}\n"));
    }
    // Started again (restored again): same writable layer, same volumes, new input.
    let again = hx_with(true, &["start", "-ai", "w"], b"typed-again\n");
    assert_eq!((again.code, again.stderr.as_str()), (3, "err\n"));
    assert_eq!(
        again.stdout,
        "typed-again\nfrom-host\nvol-has-a\nmark-present\nwarm\n"
    );
    let ls = hx_with(true, &["system", "template", "ls"], b"").stdout;
    assert!(ls.contains("ro,ro,rw,rw+9p:1+stdin "), "{ls}");
    let rm = hx_with(true, &["rm", "c", "w"], b"");
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    assert_eq!(common::qemu_processes_for(hx.root()), 0);
}

#[test]
fn a_killed_restore_leaves_nothing_behind() {
    let Some(hx) = Hx::with_busybox() else { return };
    let templates = tempfile::tempdir().unwrap();
    let t = templates.path();
    // The template first, then an `hx run` killed while its QEMU loads it.
    let ok = run(&hx, t, &[], &["run", "--rm", BUSYBOX, "true"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let mut c = hx.cmd(&["run", "--rm", BUSYBOX, "sleep", "30"]);
    c.env("HX_TEMPLATE_DIR", t)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let restoring = || {
        common::qemu_cmdlines_for(hx.root())
            .iter()
            .any(|args| args.iter().any(|a| a == "-incoming"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !restoring() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(restoring(), "no restore started");
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever it had reached, `rm -f` of what `ps` shows takes it all.
    let ps = hx.ok(&["ps", "-aq"]).stdout;
    for id in ps.split_whitespace() {
        hx.ok(&["rm", "-f", id]);
    }
    assert_eq!(hx.ok(&["ps", "-aq"]).stdout, "");
    assert_eq!(common::qemu_processes_for(hx.root()), 0);
    let containers = hx.root().join("containers");
    let left = std::fs::read_dir(&containers)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "container directories left");
}
