//! Image store end to end through the CLI: load, import, listing, removal, and every way a bad
//! archive must be refused with its own exit code and an unchanged store.
mod common;
use common::{shared_image, Hx, BUSYBOX};
use sha2::Digest as _;
use std::path::Path;

/// A tar entry for hand-made (possibly hostile) layers.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
    CharDev(&'a str, u32, u32),
    /// A file carrying PAX xattrs.
    XattrFile(&'a str, &'a [u8], &'a str, &'a str),
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (name, data): (&str, &[u8]) = match e {
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, &[])
            }
            E::File(n, d, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(1000);
                h.set_gid(1000);
                (n, d)
            }
            E::Symlink(n, t) | E::Hardlink(n, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                // set_link_name refuses '..'; write the raw field as a hostile archive would.
                let raw = t.as_bytes();
                let gnu = h.as_gnu_mut().unwrap();
                gnu.linkname = [0; 100];
                gnu.linkname[..raw.len()].copy_from_slice(raw);
                (n, &[])
            }
            E::Fifo(n) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                (n, &[])
            }
            E::CharDev(n, ma, mi) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_device_major(*ma).unwrap();
                h.set_device_minor(*mi).unwrap();
                (n, &[])
            }
            E::XattrFile(n, d, k, v) => {
                b.append_pax_extensions([(format!("SCHILY.xattr.{k}").as_str(), v.as_bytes())])
                    .unwrap();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (n, d)
            }
        };
        h.set_size(data.len() as u64);
        if name.len() < 100 && !name.contains("..") && !name.starts_with('/') {
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, data).unwrap();
        } else if name.len() >= 100 {
            b.append_data(&mut h, name, data).unwrap();
        } else {
            let raw = name.as_bytes();
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..raw.len()].copy_from_slice(raw);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Writes an OCI layout with one image made of `layers` (uncompressed tars).
fn write_layout(dir: &Path, name: &str, layers: &[Vec<u8>], cmd: &[&str]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| -> String {
        let h = sha(bytes);
        std::fs::write(dir.join("blobs/sha256").join(&h), bytes).unwrap();
        h
    };
    let mut descs = vec![];
    let mut diff_ids = vec![];
    for l in layers {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, l).unwrap();
        let gz = gz.finish().unwrap();
        diff_ids.push(format!("sha256:{}", sha(l)));
        let h = put(&gz);
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{h}"), "size": gz.len()}));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": cmd, "Env": ["PATH=/bin"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let cbytes = serde_json::to_vec(&config).unwrap();
    let ch = put(&cbytes);
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{ch}"), "size": cbytes.len()}, "layers": descs});
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let mh = put(&mbytes);
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{mh}"), "size": mbytes.len(),
         "platform": {"architecture": "amd64", "os": "linux"}, "annotations": {"io.containerd.image.name": name}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn busybox_layer() -> Vec<u8> {
    let layout = shared_image("musl");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(m)).unwrap())
            .unwrap();
    let l = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let gz = std::fs::read(layout.join("blobs/sha256").join(l)).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
    out
}

#[test]
fn loads_the_official_busybox_images() {
    let hx = Hx::new();
    for flavour in ["glibc", "musl", "uclibc"] {
        let r = hx.ok(&["load", "-i", shared_image(flavour).to_str().unwrap()]);
        assert_eq!(
            r.stdout,
            format!("Loaded image: busybox:1.38.0-{flavour}\n")
        );
    }
    let table = hx.ok(&["images"]).stdout;
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.starts_with("REPOSITORY"));
    let v: serde_json::Value = serde_json::from_str(&hx.ok(&["images", "--json"]).stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    let inspect: serde_json::Value =
        serde_json::from_str(&hx.ok(&["image", "inspect", BUSYBOX]).stdout).unwrap();
    assert_eq!(
        inspect[0]["Config"]["config"]["Cmd"],
        serde_json::json!(["sh"])
    );
    assert_eq!(inspect[0]["Rootfs"]["Built"], true);
    // Loading again changes nothing; an id prefix finds the image.
    let before = hx.store_files();
    hx.ok(&["load", "-i", shared_image("glibc").to_str().unwrap()]);
    assert_eq!(hx.store_files(), before);
    let id = inspect[0]["Id"].as_str().unwrap()[7..19].to_string();
    hx.ok(&["image", "inspect", &id]);
    // rmi by name untags and deletes; prune leaves no blob of it.
    let r = hx.ok(&["rmi", "busybox:1.38.0-musl"]);
    assert!(
        r.stdout.contains("Untagged: busybox:1.38.0-musl") && r.stdout.contains("Deleted: sha256:"),
        "{}",
        r.stdout
    );
    assert_eq!(
        hx.run(&["image", "inspect", "busybox:1.38.0-musl"]).code,
        11
    );
    assert_eq!(hx.ok(&["images", "-q"]).stdout.lines().count(), 2);
}

#[test]
fn multi_layer_image_keeps_every_kind_of_entry() {
    let hx = Hx::new();
    let long = format!("deep/{}", "n".repeat(150));
    let l1 = tar_of(&[
        E::Dir("etc"),
        E::File("etc/gone", b"old", 0o644),
        E::Dir("opaque"),
        E::File("opaque/old1", b"1", 0o644),
        E::File("opaque/old2", b"2", 0o644),
        E::File("data/orig", b"shared bytes", 0o644),
        E::File("bin/su-ish", b"#!/bin/sh\n", 0o4755),
    ]);
    let l2 = tar_of(&[
        E::File("etc/.wh.gone", b"", 0o644),
        E::File("opaque/.wh..wh..opq", b"", 0o644),
        E::File("opaque/new", b"fresh", 0o644),
        E::Hardlink("data/link", "data/orig"),
        E::Symlink("data/sym", "/data/orig"),
        E::Dir("deep"),
        E::File(&long, b"long name", 0o600),
        E::Fifo("data/fifo"),
        E::CharDev("data/null", 1, 3),
        E::XattrFile("data/xattr", b"x", "user.hx", "yes"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    write_layout(
        dir.path(),
        "layers:test",
        &[busybox_layer(), l1, l2],
        &["sh"],
    );
    hx.ok(&["load", "-i", dir.path().to_str().unwrap()]);
    check_rootfs_on_host(&hx, &long);
    if !hx.has_guest() {
        return;
    }
    // Check what the guest sees, file by file.
    let script = format!(
        "cd /; test ! -e etc/gone && echo whiteout-ok; ls opaque | tr '\\n' ' '; echo; \
         stat -c '%h %s' data/orig data/link; readlink data/sym; cat data/sym; echo; \
         stat -c '%F' data/fifo; stat -c '%F %t:%T' data/null; stat -c '%a %u:%g' bin/su-ish; \
         cat {long}; echo; getfattr -n user.hx data/xattr 2>/dev/null || busybox getfattr -n user.hx data/xattr 2>/dev/null || echo no-getfattr"
    );
    let r = hx.run(&["run", "--rm", "layers:test", "sh", "-c", &script]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "whiteout-ok");
    assert_eq!(
        lines[1].trim(),
        "new",
        "opaque dir hides the lower layer's files"
    );
    assert_eq!(lines[2], "2 12", "hardlink across layers shares the inode");
    assert_eq!(lines[3], "2 12");
    assert_eq!(lines[4], "/data/orig");
    assert_eq!(lines[5], "shared bytes");
    assert_eq!(lines[6], "fifo");
    assert_eq!(lines[7], "character special file 1:3");
    assert_eq!(lines[8], "4755 1000:1000", "setuid and ownership kept");
    assert_eq!(lines[9], "long name");
}

/// Mounts the built erofs image on the host (root only: a loop mount) and checks it file by
/// file, xattrs included (busybox in the guest has no getfattr).
fn check_rootfs_on_host(hx: &Hx, long: &str) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP host-side rootfs check: needs root for a loop mount");
        return;
    }
    let images: Vec<_> = std::fs::read_dir(hx.root().join("rootfs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".erofs"))
        .collect();
    assert_eq!(images.len(), 1, "one rootfs image: {images:?}");
    let mnt = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "erofs", "-o", "loop,ro"])
        .arg(&images[0])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(st.success(), "mount -t erofs {}", images[0].display());
    let m = mnt.path();
    let result = std::panic::catch_unwind(|| {
        assert!(!m.join("etc/gone").exists(), "whiteout removed etc/gone");
        let mut opaque: Vec<_> = std::fs::read_dir(m.join("opaque"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        opaque.sort();
        assert_eq!(
            opaque,
            vec![std::ffi::OsString::from("new")],
            "opaque dir hides the lower layer"
        );
        let orig = std::fs::metadata(m.join("data/orig")).unwrap();
        let link = std::fs::metadata(m.join("data/link")).unwrap();
        assert_eq!(
            (orig.ino(), orig.nlink()),
            (link.ino(), 2),
            "hardlink across layers"
        );
        assert_eq!(
            std::fs::read_link(m.join("data/sym")).unwrap(),
            Path::new("/data/orig")
        );
        assert!(std::fs::symlink_metadata(m.join("data/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        let null = std::fs::symlink_metadata(m.join("data/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        let su = std::fs::metadata(m.join("bin/su-ish")).unwrap();
        assert_eq!(
            (su.mode() & 0o7777, su.uid(), su.gid()),
            (0o4755, 1000, 1000)
        );
        assert_eq!(std::fs::read(m.join(long)).unwrap(), b"long name");
        let path =
            std::ffi::CString::new(m.join("data/xattr").into_os_string().into_encoded_bytes())
                .unwrap();
        let mut buf = [0u8; 16];
        // SAFETY: path is NUL-terminated and buf is valid for buf.len() bytes.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                c"user.hx".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(n, 3, "xattr user.hx kept");
        assert_eq!(&buf[..3], b"yes");
    });
    let _ = std::process::Command::new("umount").arg(m).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn assert_refused(hx: &Hx, entries: &[E], code: i32, needle: &str) {
    let before = hx.store_files();
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let tarball = dir.path().join("evil.tar");
    std::fs::write(&tarball, tar_of(entries)).unwrap();
    let r = hx.run(&["import", tarball.to_str().unwrap(), "evil:1"]);
    assert_eq!(r.code, code, "{needle}: {}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    assert!(r.stderr.contains(needle), "{needle} not in {}", r.stderr);
    assert_eq!(
        hx.store_files(),
        before,
        "store changed by a refused import"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn hostile_layers_are_refused_and_change_nothing() {
    let hx = Hx::new();
    hx.ok(&["load", "-i", shared_image("musl").to_str().unwrap()]);
    assert_refused(
        &hx,
        &[E::File("../escape", b"x", 0o644)],
        20,
        "\"../escape\": name contains '..'",
    );
    assert_refused(
        &hx,
        &[E::File("/etc/cron.d/evil", b"x", 0o644)],
        20,
        "absolute name",
    );
    assert_refused(
        &hx,
        &[E::Symlink("up", "../../../../etc")],
        20,
        "points outside the rootfs",
    );
    assert_refused(
        &hx,
        &[E::Dir("a"), E::Hardlink("a/h", "../../etc/passwd")],
        20,
        "hardlink target",
    );
    assert_refused(
        &hx,
        &[
            E::Symlink("etc", "/tmp"),
            E::File("etc/passwd", b"x", 0o644),
        ],
        20,
        "is a symlink",
    );
    assert_refused(
        &hx,
        &[
            E::Dir("d"),
            E::Symlink("d/l", "."),
            E::File("d/l/x", b"x", 0o644),
        ],
        20,
        "is a symlink",
    );
    assert_refused(&hx, &[E::Hardlink("h", "missing")], 21, "does not exist");
    assert_refused(&hx, &[E::File(".wh...", b"", 0o644)], 20, "whiteout");
}

#[test]
fn import_directory_and_tarball_with_changes() {
    let hx = Hx::new();
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("bb.tar");
    std::fs::write(&tarball, busybox_layer()).unwrap();
    let r = hx.ok(&[
        "import",
        tarball.to_str().unwrap(),
        "mybox:v1",
        "--change",
        "CMD [\"echo\", \"from-cmd\"]",
        "--change",
        "ENV PATH=/bin",
        "--change",
        "WORKDIR /tmp",
    ]);
    assert!(r.stdout.starts_with("sha256:"));
    let v: serde_json::Value =
        serde_json::from_str(&hx.ok(&["image", "inspect", "mybox:v1"]).stdout).unwrap();
    assert_eq!(v[0]["Config"]["config"]["WorkingDir"], "/tmp");
    assert_eq!(
        hx.run(&[
            "import",
            tarball.to_str().unwrap(),
            "x:1",
            "--change",
            "FROM scratch"
        ])
        .code,
        125
    );
    assert_eq!(hx.run(&["import", "/nonexistent", "x:1"]).code, 28);
    assert_eq!(
        hx.run(&["import", tarball.to_str().unwrap(), "Bad Name"])
            .code,
        10
    );
    if hx.has_guest() {
        let r = hx.run(&["run", "--rm", "mybox:v1"]);
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, "from-cmd\n"),
            "{}",
            r.stderr
        );
        let r = hx.run(&["run", "--rm", "mybox:v1", "pwd"]);
        assert_eq!(r.stdout, "/tmp\n");
    }
}

#[test]
fn docker_save_and_oci_archive_load() {
    let hx = Hx::new();
    let dir = tempfile::tempdir().unwrap();
    // oci-archive: the layout, tarred.
    let oci = dir.path().join("busybox.oci.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(shared_image("uclibc"))
        .arg("-cf")
        .arg(&oci)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        hx.ok(&["load", "-i", oci.to_str().unwrap()]).stdout,
        "Loaded image: busybox:1.38.0-uclibc\n"
    );
    // docker save: manifest.json + config + layer tars.
    let save = dir.path().join("save");
    std::fs::create_dir(&save).unwrap();
    let layer = busybox_layer();
    let lh = sha(&layer);
    std::fs::create_dir(save.join(&lh)).unwrap();
    std::fs::write(save.join(&lh).join("layer.tar"), &layer).unwrap();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{lh}")]}});
    let cb = serde_json::to_vec(&config).unwrap();
    let ch = sha(&cb);
    std::fs::write(save.join(format!("{ch}.json")), &cb).unwrap();
    let manifest = serde_json::json!([{"Config": format!("{ch}.json"), "RepoTags": ["saved:1"], "Layers": [format!("{lh}/layer.tar")]}]);
    std::fs::write(
        save.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let tarball = dir.path().join("saved.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&save)
        .arg("-czf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        hx.ok(&["load", "-i", tarball.to_str().unwrap()]).stdout,
        "Loaded image: saved:1\n"
    );
    // Not an image archive at all.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, tar_of(&[E::File("hello", b"x", 0o644)])).unwrap();
    let before = hx.store_files();
    let r = hx.run(&["load", "-i", junk.to_str().unwrap()]);
    assert_eq!(r.code, 23, "{}", r.stderr);
    let mut after = hx.store_files();
    after.retain(|f| !f.starts_with("tmp/"));
    assert_eq!(after, before);
}

#[test]
fn full_disk_is_reported_and_leaves_nothing() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root to mount a small tmpfs");
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(st.success());
    let root = mnt.path().join("store");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hx"))
        .arg("--root")
        .arg(&root)
        .args(["load", "-i", shared_image("glibc").to_str().unwrap()])
        .output()
        .unwrap();
    let mut left = Vec::new();
    for e in walkdir(&root) {
        if !e.ends_with("lock") {
            left.push(e);
        }
    }
    let _ = std::process::Command::new("umount")
        .arg(mnt.path())
        .status();
    assert_eq!(
        out.status.code(),
        Some(22),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not enough space"));
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn walkdir(p: &Path) -> Vec<String> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walkdir(&e.path()));
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[test]
fn listings_into_a_closed_pipe_end_quietly_by_sigpipe() {
    use std::os::unix::process::ExitStatusExt;
    let hx = Hx::new();
    hx.load_busybox();
    // `hx images | head -0`: the reader is gone before hx writes its first line.
    for args in [
        &["images"][..],
        &["images", "-q"],
        &["images", "--json"],
        &["ps", "-a"],
        &["volume", "ls"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = hx
            .cmd(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "hx {args:?}: {:?}, stderr: {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "hx {args:?} wrote to stderr: {stderr}");
    }
}

#[test]
fn run_unpacks_under_the_same_limits_as_pull_and_load() {
    let hx = Hx::new();
    hx.load_busybox();
    // hx load unpacked the image; a run unpacks again once the cached root filesystem is gone.
    for e in std::fs::read_dir(hx.root().join("rootfs")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::write(
        hx.root().join("config.toml"),
        "[limits]\nmax_layer_entries = 5\n",
    )
    .unwrap();
    let r = hx.run(&["run", "--rm", BUSYBOX, "true"]);
    // hx run keeps docker's 125 for its own failures (docs/cli.md); hx load would exit 32.
    assert_eq!(r.code, 125, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("more than 5 entries") && r.stderr.contains("max_layer_entries"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    let left: Vec<_> = hx
        .store_files()
        .into_iter()
        .filter(|f| {
            f.starts_with("rootfs/") || f.starts_with("tmp/") || f.starts_with("containers/")
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
