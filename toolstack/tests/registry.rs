//! `hx pull` against a real registry server (Debian's docker-registry on 127.0.0.1), pushed to
//! with skopeo from the official busybox OCI layouts.
mod common;
use common::{run_with_timeout, shared_image, Hx, Registry};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn layout_manifest(layout: &Path) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(d)).unwrap()).unwrap()
}

fn layer_hex(layout: &Path) -> String {
    layout_manifest(layout)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string()
}

fn image_id(hx: &Hx, name: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&hx.ok(&["image", "inspect", name]).stdout).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

/// Store contents outside tmp/ (a partial download there is kept on purpose, for resume).
fn visible(hx: &Hx) -> Vec<String> {
    hx.store_files()
        .into_iter()
        .filter(|f| !f.starts_with("tmp/"))
        .collect()
}

#[test]
fn pulls_from_a_real_registry_and_runs() {
    let reg = Registry::start();
    reg.push_layout(&shared_image("glibc"), "library/busybox:1.38.0", None);
    let hx = Hx::new();
    let image = format!("{}/library/busybox:1.38.0", reg.host());
    let r = hx.run(&["pull", &image]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("Status: Downloaded newer image"),
        "{}",
        r.stderr
    );
    assert!(hx
        .ok(&["images"])
        .stdout
        .contains(&format!("{}/library/busybox", reg.host())));
    let r = hx.ok(&["pull", &image]);
    assert!(r.stderr.contains("Image is up to date"), "{}", r.stderr);
    // By digest.
    let digest =
        serde_json::from_str::<serde_json::Value>(&hx.ok(&["image", "inspect", &image]).stdout)
            .unwrap()[0]["ManifestDigest"]
            .as_str()
            .unwrap()
            .to_string();
    let hx2 = Hx::new();
    hx2.ok(&[
        "pull",
        "-q",
        &format!("{}/library/busybox@{digest}", reg.host()),
    ]);
    if hx.has_guest() {
        let r = hx.run(&["run", "--rm", &image, "echo", "pulled"]);
        assert_eq!(r.stdout, "pulled\n", "{}", r.stderr);
        // `hx run` pulls a missing image itself.
        let hx3 = Hx::new();
        let r = hx3.run(&["run", "--rm", &image, "echo", "auto"]);
        assert_eq!((r.code, r.stdout.as_str()), (0, "auto\n"), "{}", r.stderr);
    }
}

#[test]
fn multi_platform_index_picks_amd64_or_the_asked_platform() {
    // An OCI layout whose one ref is an index of two images: glibc as linux/amd64, musl as linux/arm64/v8.
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut entries = vec![];
    for (flavour, arch, variant) in [("glibc", "amd64", None), ("musl", "arm64", Some("v8"))] {
        let src = shared_image(flavour);
        for b in std::fs::read_dir(src.join("blobs/sha256"))
            .unwrap()
            .flatten()
        {
            std::fs::copy(b.path(), blobs.join(b.file_name())).unwrap();
        }
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
        let mut e = index["manifests"][0].clone();
        e.as_object_mut().unwrap().remove("annotations");
        e["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            e["platform"]["variant"] = serde_json::json!(v);
        }
        entries.push(e);
    }
    let inner = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})).unwrap();
    let inner_hex = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&inner));
    std::fs::write(blobs.join(&inner_hex), &inner).unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{inner_hex}"), "size": inner.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&top).unwrap(),
    )
    .unwrap();

    let reg = Registry::start();
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", dir.path().display()))
        .arg(format!("docker://{}/multi/busybox:1", reg.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = format!("{}/multi/busybox:1", reg.host());
    let glibc_id = layout_manifest(&shared_image("glibc"))["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let musl_id = layout_manifest(&shared_image("musl"))["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let hx = Hx::new();
    hx.ok(&["pull", "-q", &image]);
    assert_eq!(
        image_id(&hx, &image),
        glibc_id,
        "linux/amd64 is the default"
    );
    let hx = Hx::new();
    hx.ok(&["pull", "-q", "--platform", "linux/arm64", &image]);
    assert_eq!(image_id(&hx, &image), musl_id);
    let hx = Hx::new();
    let r = hx.run(&["pull", "--platform", "linux/s390x", &image]);
    assert_eq!(r.code, 19, "{}", r.stderr);
    assert!(
        r.stderr.contains("linux/amd64, linux/arm64/v8"),
        "{}",
        r.stderr
    );
    assert!(visible(&hx).is_empty());
}

#[test]
fn bad_registry_answers_have_distinct_exit_codes_and_leave_the_store_unchanged() {
    let reg = Registry::start();
    reg.push_layout(&shared_image("musl"), "library/busybox:good", None);
    let hx = Hx::new();

    // Tag not found.
    let r = hx.run(&["pull", &format!("{}/library/busybox:nope", reg.host())]);
    assert_eq!(r.code, 12, "{}", r.stderr);
    assert!(r.stderr.contains("manifest unknown"));
    // Registry not there at all.
    let r = hx.run(&["pull", &format!("127.0.0.1:{}/x/y:1", common::free_port())]);
    assert_eq!(r.code, 14, "{}", r.stderr);
    // Invalid reference.
    assert_eq!(hx.run(&["pull", "UPPER/case"]).code, 10);

    // A manifest whose layer has a media type nobody knows.
    let layout = shared_image("musl");
    let mut m = layout_manifest(&layout);
    m["layers"][0]["mediaType"] = serde_json::json!("application/vnd.example.unknown.layer");
    let body = serde_json::to_vec(&m).unwrap();
    let st = std::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            "@-",
        ])
        .arg(format!(
            "http://{}/v2/library/busybox/manifests/weird",
            reg.host()
        ))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(&body)?;
            c.wait()
        })
        .unwrap();
    assert!(st.success(), "registry refused the manifest");
    let r = hx.run(&["pull", &format!("{}/library/busybox:weird", reg.host())]);
    assert_eq!(r.code, 18, "{}", r.stderr);
    assert!(r.stderr.contains("application/vnd.example.unknown.layer"));
    assert!(visible(&hx).is_empty(), "{:?}", visible(&hx));

    // Corrupt the layer's bytes in the registry's storage (same size): digest mismatch.
    let data = reg.blob_data(&layer_hex(&layout));
    let good = std::fs::read(&data).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&data, &bad).unwrap();
    let r = hx.run(&["pull", &format!("{}/library/busybox:good", reg.host())]);
    assert_eq!(r.code, 16, "{}", r.stderr);
    assert!(r.stderr.contains("digest mismatch"));
    assert!(visible(&hx).is_empty(), "{:?}", visible(&hx));
    let layer_partial = format!("tmp/partial-{}", layer_hex(&layout));
    assert!(
        !hx.store_files().contains(&layer_partial),
        "a corrupt partial is not kept"
    );

    // Truncate it: a short blob.
    std::fs::write(&data, &good[..good.len() / 3]).unwrap();
    let r = hx.run(&["pull", &format!("{}/library/busybox:good", reg.host())]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(r.stderr.contains("truncated"));
    assert!(visible(&hx).is_empty());

    // Repaired: the pull completes.
    std::fs::write(&data, &good).unwrap();
    hx.ok(&[
        "pull",
        "-q",
        &format!("{}/library/busybox:good", reg.host()),
    ]);
}

#[test]
fn basic_auth_needs_credentials_from_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let st = std::process::Command::new("htpasswd")
        .args(["-Bbc"])
        .arg(&htpasswd)
        .args(["hxuser", "s3cret"])
        .output()
        .unwrap();
    assert!(st.status.success());
    let reg = Registry::start_with_auth(&format!(
        "  htpasswd:\n    realm: hx-test\n    path: {}",
        htpasswd.display()
    ));
    reg.push_layout(
        &shared_image("musl"),
        "private/busybox:1",
        Some("hxuser:s3cret"),
    );
    let image = format!("{}/private/busybox:1", reg.host());

    let hx = Hx::new();
    let docker_cfg = tempfile::tempdir().unwrap();
    let r = run_with_timeout(
        {
            let mut c = hx.cmd(&["pull", &image]);
            c.env("DOCKER_CONFIG", docker_cfg.path());
            c
        },
        Duration::from_secs(60),
    );
    assert_eq!(r.code, 13, "{}", r.stderr);
    assert!(r.stderr.contains("unauthorized"), "{}", r.stderr);
    assert!(visible(&hx).is_empty());

    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("hxuser:s3cret");
    std::fs::write(
        docker_cfg.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let r = run_with_timeout(
        {
            let mut c = hx.cmd(&["pull", "-q", &image]);
            c.env("DOCKER_CONFIG", docker_cfg.path());
            c
        },
        Duration::from_secs(60),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Forwards to the registry; the first `cut_first` connections die after `limit` bytes of response.
struct FlakyProxy {
    port: u16,
    relayed: Arc<AtomicU64>,
}

fn start_proxy(upstream: u16, cut_first: usize, limit: u64) -> FlakyProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let relayed = Arc::new(AtomicU64::new(0));
    let conns = Arc::new(AtomicUsize::new(0));
    let relayed2 = relayed.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let n = conns.fetch_add(1, Ordering::SeqCst);
            let relayed = relayed2.clone();
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_r, &mut s_w);
                });
                let (mut s_r, mut c_w) = (server, client);
                let mut buf = [0u8; 16384];
                let mut sent = 0u64;
                while let Ok(k) = s_r.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    if n < cut_first && sent + k as u64 > limit {
                        let _ = c_w.write_all(&buf[..(limit - sent) as usize]);
                        let _ = c_w.shutdown(std::net::Shutdown::Both);
                        let _ = s_r.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if c_w.write_all(&buf[..k]).is_err() {
                        break;
                    }
                    sent += k as u64;
                    relayed.fetch_add(k as u64, Ordering::SeqCst);
                }
                let _ = c_w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    FlakyProxy { port, relayed }
}

#[test]
fn registry_dying_mid_pull_then_resume() {
    let reg = Registry::start();
    let layout = shared_image("glibc");
    reg.push_layout(&layout, "library/busybox:big", None);
    let layer_size = layout_manifest(&layout)["layers"][0]["size"]
        .as_u64()
        .unwrap();
    let hx = Hx::new();

    // Connection 0 is the auth probe, 1 the manifest, 2 the config: cut every connection after
    // 1 MiB, which only the layer reaches.
    let flaky = start_proxy(reg.port, 1000, 1 << 20);
    let r = hx.run(&[
        "pull",
        &format!("127.0.0.1:{}/library/busybox:big", flaky.port),
    ]);
    assert_eq!(r.code, 14, "{}", r.stderr);
    let partial = format!("tmp/partial-{}", layer_hex(&layout));
    assert!(
        hx.store_files().contains(&partial),
        "the verified part is kept: {:?}",
        hx.store_files()
    );
    let kept = std::fs::metadata(hx.root().join(&partial)).unwrap().len();
    assert!(kept > 0 && kept < layer_size, "kept {kept} of {layer_size}");
    assert!(hx.ok(&["images", "-q"]).stdout.is_empty());

    // Through a healthy path: only the rest of the layer crosses the wire.
    let healthy = start_proxy(reg.port, 0, 0);
    let r = hx.run(&[
        "pull",
        &format!("127.0.0.1:{}/library/busybox:big", healthy.port),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let moved = healthy.relayed.load(Ordering::SeqCst);
    assert!(
        moved < layer_size - kept / 2,
        "resumed: {moved} bytes moved, layer {layer_size}, had {kept}"
    );
    assert_eq!(
        hx.store_files()
            .iter()
            .filter(|f| f.starts_with("tmp/"))
            .count(),
        0
    );
    let _ = flaky.relayed.load(Ordering::SeqCst);
}

/// The Docker Hub flow for real: 401 with `WWW-Authenticate: Bearer realm=…`, a token from the
/// realm (with basic credentials from docker's config.json), then the pull with the token.
#[test]
fn bearer_token_flow_against_a_token_server() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=hx-test-token-issuer",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let tport = common::free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/token_server.py");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let token_err = dir.path().join("token-server.err");
    let mut server = Kill(
        std::process::Command::new("python3")
            .arg(script)
            .arg(tport.to_string())
            .arg(&key)
            .arg(&cert)
            .args(["tokuser", "tokpass", "hx-test-issuer", "hx-test-registry"])
            .stderr(std::fs::File::create(&token_err).unwrap())
            .spawn()
            .unwrap(),
    );
    common::wait_for_http(tport, &mut server.0, &token_err, "token server");
    let reg = Registry::start_with_auth(&format!(
        "  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: hx-test-registry\n    issuer: hx-test-issuer\n    rootcertbundle: {}",
        cert.display()
    ));
    reg.push_layout(
        &shared_image("musl"),
        "secure/busybox:1",
        Some("tokuser:tokpass"),
    );
    let image = format!("{}/secure/busybox:1", reg.host());
    let hx = Hx::new();
    let docker_cfg = tempfile::tempdir().unwrap();
    let pull = |args: &[&str]| {
        let mut c = hx.cmd(args);
        c.env("DOCKER_CONFIG", docker_cfg.path());
        run_with_timeout(c, Duration::from_secs(60))
    };
    let r = pull(&["pull", &image]);
    assert_eq!(r.code, 13, "no credentials: {}", r.stderr);
    assert!(visible(&hx).is_empty());
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("tokuser:wrong");
    std::fs::write(
        docker_cfg.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    assert_eq!(pull(&["pull", &image]).code, 13, "wrong password");
    let auth = base64::engine::general_purpose::STANDARD.encode("tokuser:tokpass");
    std::fs::write(
        docker_cfg.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let r = pull(&["pull", "-q", &image]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(hx.ok(&["images", "-q"]).stdout.lines().count(), 1);
    login_tag_push_and_logout(&hx, &reg, &image, docker_cfg.path());
}

/// `hx login` (checked against the token server first), `hx tag`, `hx push` to another
/// repository and back with `hx pull` into another store, `hx logout`.
fn login_tag_push_and_logout(hx: &Hx, reg: &Registry, image: &str, docker_cfg: &Path) {
    let config = docker_cfg.join("config.json");
    let with_cfg = |args: &[&str], stdin: Option<&str>| {
        let mut c = hx.cmd(args);
        c.env("DOCKER_CONFIG", docker_cfg);
        let Some(input) = stdin else {
            return run_with_timeout(c, Duration::from_secs(60));
        };
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        common::wait_with_timeout(child, Duration::from_secs(60))
    };
    let host = reg.host();
    std::fs::remove_file(&config).unwrap();
    let r = with_cfg(
        &["login", "-u", "tokuser", "--password-stdin", &host],
        Some("wrong\n"),
    );
    assert_eq!(r.code, 13, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!("hx: {host}: unauthorized: incorrect username or password\n")
    );
    assert!(!config.exists(), "a refused login writes nothing");
    let r = with_cfg(
        &["login", "-u", "tokuser", "--password-stdin", &host],
        Some("tokpass\n"),
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "Login Succeeded\n"),
        "{}",
        r.stderr
    );
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        saved["auths"][&host]["auth"],
        base64::engine::general_purpose::STANDARD.encode("tokuser:tokpass")
    );
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let copy = format!("{host}/secure/copy:2");
    hx.ok(&["tag", image, &copy]);
    let r = with_cfg(&["push", &copy], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("The push refers to repository [{host}/secure/copy]")
    );
    assert!(lines[1..lines.len() - 1]
        .iter()
        .all(|l| l.len() == 20 && l.ends_with(": Pushed")));
    let link = reg
        .dir
        .path()
        .join("storage/docker/registry/v2/repositories/secure/copy/_manifests/tags/2/current/link");
    let digest = std::fs::read_to_string(link).unwrap();
    assert!(
        lines[lines.len() - 1].starts_with(&format!("2: digest: {digest} size: ")),
        "{}",
        r.stdout
    );
    let r = with_cfg(&["push", &copy], None);
    assert!(
        r.stdout.contains(": Layer already exists\n"),
        "{}",
        r.stdout
    );
    // Back into an empty store: the same image id.
    let other = Hx::new();
    let mut c = other.cmd(&["pull", "-q", &copy]);
    c.env("DOCKER_CONFIG", docker_cfg);
    assert_eq!(run_with_timeout(c, Duration::from_secs(60)).code, 0);
    assert_eq!(
        other.ok(&["images", "-q"]).stdout,
        hx.ok(&["images", "-q"]).stdout
    );

    let r = with_cfg(&["push", &format!("{host}/secure/nothere:1")], None);
    assert_eq!(r.code, 11, "{}", r.stderr);
    let r = with_cfg(&["logout", &host], None);
    assert_eq!(r.stdout, format!("Removing login credentials for {host}\n"));
    let r = with_cfg(&["logout", &host], None);
    assert_eq!(r.stdout, format!("Not logged in to {host}\n"));
    assert_eq!(with_cfg(&["push", &copy], None).code, 13, "logged out");
}

/// A registry over HTTPS with a certificate of the test's own CA, in a network namespace the
/// test makes (an address that is not loopback: hx speaks plain HTTP only to local
/// registries). hx verifies the server against the system's roots — here SSL_CERT_FILE, the
/// test's CA — pulls through it, and refuses the same server when the CA is not trusted.
#[test]
fn pulls_over_https_verifying_the_registry_certificate() {
    if !common::netns::root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = "10.254.77.1";
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=hx test CA",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=hx test registry",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        format!(
            "subjectAltName=IP:{addr}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let ns = format!("hxtls-{}", std::process::id());
    let ip = |args: &[&str]| common::netns::sh(&[&["ip"][..], args].concat());
    ip(&["netns", "add", &ns]);
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }
    let _ns = Ns(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&["-n", &ns, "addr", "add", &format!("{addr}/32"), "dev", "lo"]);
    let port = 5443;
    std::fs::write(
        d.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}:{port}\n  tls:\n    certificate: {}\n    key: {}\n",
            d.join("storage").display(),
            d.join("server.pem").display(),
            d.join("server.key").display()
        ),
    )
    .unwrap();
    let in_ns = |program: &str| {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &ns, program]);
        c
    };
    let mut registry = in_ns("docker-registry")
        .arg("serve")
        .arg(d.join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(d.join("registry.err")).unwrap())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _registry = Kill(&mut registry);
    let image = format!("{addr}:{port}/library/busybox:1.38.0");
    // skopeo's certificate directory: `*.crt` are CAs (a `*.key` would be a client key).
    let certs = d.join("skopeo-certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(d.join("ca.pem"), certs.join("ca.crt")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = in_ns("skopeo")
            .args(["copy", "--quiet", "--dest-cert-dir"])
            .arg(&certs)
            .arg(format!("oci:{}", shared_image("glibc").display()))
            .arg(format!("docker://{image}"))
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "skopeo copy: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(d.join("registry.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let hx = Hx::new();
    let pull = |ca: Option<&Path>| {
        let mut c = in_ns(env!("CARGO_BIN_EXE_hx"));
        c.arg("--root").arg(hx.root.path()).args(["pull", &image]);
        c.env_remove("HX_ROOT").env_remove("SSL_CERT_DIR");
        match ca {
            Some(ca) => c.env("SSL_CERT_FILE", ca),
            // No file of that name: the system's roots, which do not know the test's CA.
            None => c.env_remove("SSL_CERT_FILE"),
        };
        run_with_timeout(c, Duration::from_secs(120))
    };
    let refused = pull(None);
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!("{addr}:{port}"))
            && refused.stderr.contains("certificate"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        hx.ok(&["images", "-q"]).stdout,
        "",
        "a refused pull stored nothing"
    );
    let ok = pull(Some(&d.join("ca.pem")));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(
        ok.stderr.contains("Status: Downloaded newer image"),
        "{}",
        ok.stderr
    );
    assert!(hx
        .ok(&["images"])
        .stdout
        .contains(&format!("{addr}:{port}/library/busybox")));
}
