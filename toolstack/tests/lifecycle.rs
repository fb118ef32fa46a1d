//! A running container's life after `hx run -d` (issue 15): pause and unpause, on the default
//! backend of the machine the tests run on (QEMU here; the Xen lab's control check covers Xen).
mod common;
use common::{Hx, BUSYBOX};
use std::time::{Duration, Instant};

fn ticks(hx: &Hx, name: &str) -> usize {
    hx.ok(&["logs", name]).stdout.matches("tick").count()
}

fn wait_for_ticks(hx: &Hx, name: &str, more_than: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = ticks(hx, name);
        if n > more_than {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: no output past {more_than} ticks"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pause_freezes_the_workload_and_unpause_thaws_it() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "p",
        BUSYBOX,
        "sh",
        "-c",
        "while :; do echo tick; sleep 0.2; done",
    ]);
    wait_for_ticks(&hx, "p", 2);

    assert_eq!(hx.ok(&["pause", "p"]).stdout, "p\n");
    let ps = hx.ok(&["ps"]).stdout;
    assert!(ps.contains("(Paused)"), "{ps}");
    let state: serde_json::Value = serde_json::from_str(&hx.ok(&["inspect", "p"]).stdout).unwrap();
    assert_eq!(state[0]["State"]["Paused"], true, "{state}");
    assert_eq!(state[0]["State"]["Status"], "paused", "{state}");
    // Frozen: no output while paused (the first count may still catch a line in flight).
    std::thread::sleep(Duration::from_millis(500));
    let frozen = ticks(&hx, "p");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ticks(&hx, "p"), frozen, "output while paused");
    let again = hx.run(&["pause", "p"]);
    assert_eq!(again.code, 1);
    assert_eq!(again.stderr, "hx: container p is already paused\n");

    assert_eq!(hx.ok(&["unpause", "p"]).stdout, "p\n");
    wait_for_ticks(&hx, "p", frozen);
    assert!(!hx.ok(&["ps"]).stdout.contains("(Paused)"));
    let again = hx.run(&["unpause", "p"]);
    assert_eq!(again.code, 1);
    assert_eq!(again.stderr, "hx: container p is not paused\n");

    // `hx stop` of a paused container thaws it first: the workload gets its SIGTERM (143), it
    // is not killed at the deadline (137).
    hx.ok(&["pause", "p"]);
    hx.ok(&["stop", "-t", "20", "p"]);
    assert_eq!(hx.ok(&["wait", "p"]).stdout.trim(), "143");
    let r = hx.run(&["pause", "p"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "hx: container p is not running\n")
    );
    hx.ok(&["rm", "p"]);

    // Any other name is a domain, as for xl: outside a dom0 that is xen_cli.rs's exit 3.
    let r = hx.run(&["pause", "ghost"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.starts_with("hx: not a Xen dom0"), "{}", r.stderr);
}
