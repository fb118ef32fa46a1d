//! Warm start on QEMU (docs/warm-start.md): containers restored from a template snapshot behave
//! like cold ones, share nothing, and templates follow pv-init. Real kernel, pv-init and QEMU.
mod common;
use common::{run_with_timeout, Hx, Run, BUSYBOX};
use std::path::Path;
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
    let pruned = run(&hx, t, &[], &["system", "template", "prune"]);
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    let left: Vec<String> = std::fs::read_dir(t)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
