//! Docker's own CLI against a dockerd the test starts (common/docker.rs: Debian's docker.io in a
//! network namespace of its own). One dockerd for every check of this file: first docker's
//! default runtime (runc), which proves the harness, then `--runtime hx`.
mod common;
use common::docker::{Dockerd, BUSYBOX};
use std::time::Duration;

/// The checks every runtime must pass the same way: output, exit codes, a published port.
fn basics(d: &Dockerd, runtime: &[&str]) {
    let run = |args: &[&str]| {
        let mut v = vec!["run", "--rm"];
        v.extend_from_slice(runtime);
        v.push(BUSYBOX);
        v.extend_from_slice(args);
        d.docker(&v)
    };
    let r = run(&["echo", "hi"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "hi\n"), "{}", r.stderr);
    let r = run(&["sh", "-c", "exit 3"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let r = run(&["no-such-command"]);
    assert_eq!(r.code, 127, "{}{}", r.stdout, r.stderr);

    let mut args = vec!["run", "-d", "--name", "web", "-p", "8080:80"];
    args.extend_from_slice(runtime);
    args.extend_from_slice(&[BUSYBOX, "httpd", "-f", "-p", "80", "-h", "/etc"]);
    d.docker_ok(&args);
    let body = d.wait_for("http://127.0.0.1:8080/hostname", Duration::from_secs(120));
    let id = d.docker_ok(&["inspect", "-f", "{{.Config.Hostname}}", "web"]);
    assert_eq!(body.trim(), id.stdout.trim());
    d.docker_ok(&["rm", "-f", "web"]);
}

#[test]
fn docker_cli() {
    let Some(d) = Dockerd::start(&[]) else {
        return;
    };
    eprintln!("dockerd answered after {:?}", d.startup);
    d.load_busybox();
    basics(&d, &[]);
}
