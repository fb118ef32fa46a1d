//! The acceptance test of issue 5: a real nginx image (Debian bookworm minbase + nginx-light,
//! configured like docker's official image), built here, pushed to a real registry, pulled and
//! run with `-p 8080:80`, reached from another machine's namespace and from the host's
//! localhost, serving a page from a volume, logging to `hx logs`, and `hx stop` freeing the port.
mod common;
use common::netns::{NetLab, CLIENT_IP, HOST_IP};
use common::{Hx, Registry};
use std::process::Command;
use std::time::Duration;

/// tests/images/nginx.sh: the mmdebstrap output is cached across runs (/var/cache/hx-tests).
fn build_nginx_layout() -> Option<tempfile::TempDir> {
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "mmdebstrap missing in CI");
        eprintln!("SKIP: mmdebstrap missing (apt-get install mmdebstrap)");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("hx-nginx-")
        .tempdir()
        .unwrap();
    common::build_nginx_layout(&dir.path().join("layout"));
    Some(dir)
}

fn port_of(lab: &NetLab, hx: &Hx, name: &str) -> u16 {
    let out = lab.hx_ok(hx, &["port", name, "80"]).stdout;
    out.trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("hx port: {out:?}"))
}

#[test]
fn nginx_serves_through_a_published_port_from_a_volume_and_stop_frees_the_port() {
    let hx = Hx::new();
    if !hx.has_guest() {
        return;
    }
    let Some(lab) = NetLab::new(&hx) else { return };
    let Some(built) = build_nginx_layout() else {
        return;
    };
    let reg = Registry::start();
    reg.push_layout(&built.path().join("layout"), "library/nginx:test", None);
    let image = format!("{}/library/nginx:test", reg.host());
    // The registry listens in the test's own namespace: pull there, run in the lab's.
    hx.ok(&["pull", "-q", &image]);

    lab.hx_ok(
        &hx,
        &["run", "-d", "--name", "web", "-p", "8080:80", &image],
    );
    let url = format!("http://{HOST_IP}:8080/");
    let page = lab.wait_for_client(&url, Duration::from_secs(120));
    assert!(page.contains("Welcome to nginx"), "{page}");
    let local = lab
        .fetch_from_host("http://127.0.0.1:8080/")
        .expect("localhost:8080 answers");
    assert!(local.contains("Welcome to nginx"));
    // Access lines go to /dev/stdout inside the image, and from there to `hx logs`.
    let logs = lab.hx_ok(&hx, &["logs", "web"]).stdout;
    assert!(
        logs.contains(&format!("{CLIENT_IP} - - [")) && logs.contains("\"GET / HTTP/1.1\" 200"),
        "{logs}"
    );
    assert_eq!(
        lab.hx_ok(&hx, &["port", "web"]).stdout,
        "80/tcp -> 0.0.0.0:8080\n"
    );

    lab.hx_ok(&hx, &["stop", "web"]);
    assert!(lab.port_free(8080), "hx stop must free the port");
    assert!(lab.publish_rules().is_empty());
    assert!(lab.fetch_from_client(&url).is_none());
    lab.hx_ok(&hx, &["rm", "web"]);

    // A page from a host directory, read-only, on the same port again.
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("index.html"),
        "<h1>served from a volume</h1>\n",
    )
    .unwrap();
    let vol = format!("{}:/var/www/html:ro", site.path().display());
    lab.hx_ok(
        &hx,
        &[
            "run", "-d", "--name", "site", "-p", "8080:80", "-v", &vol, &image,
        ],
    );
    assert_eq!(
        lab.wait_for_client(&url, Duration::from_secs(120)),
        "<h1>served from a volume</h1>\n"
    );
    // Live: the host edits, the next request sees it.
    std::fs::write(
        site.path().join("index.html"),
        "<h1>edited on the host</h1>\n",
    )
    .unwrap();
    assert_eq!(
        lab.fetch_from_client(&url).as_deref(),
        Some("<h1>edited on the host</h1>\n")
    );

    // -P: the image's ExposedPorts (80/tcp) on a free host port.
    lab.hx_ok(&hx, &["run", "-d", "--name", "auto", "-P", &image]);
    let port = port_of(&lab, &hx, "auto");
    assert_ne!(port, 8080);
    let page = lab.wait_for_client(
        &format!("http://{HOST_IP}:{port}/"),
        Duration::from_secs(120),
    );
    assert!(page.contains("Welcome to nginx"), "{page}");

    lab.hx_ok(&hx, &["rm", "-f", "site", "auto"]);
    assert!(lab.publish_rules().is_empty());
    assert!(lab.container_links().is_empty());
    assert!(lab.port_free(8080) && lab.port_free(port));
}
