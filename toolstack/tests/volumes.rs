//! Volumes end to end on the QEMU backend: host directories and files over virtio-9p, named
//! ext4 volumes that outlive containers, the image's VOLUMEs (anonymous, filled from the image),
//! in-use protection and clear errors.
mod common;
use common::{Hx, BUSYBOX};
use std::path::Path;

fn volumes(hx: &Hx) -> Vec<String> {
    hx.ok(&["volume", "ls", "-q"])
        .stdout
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn host_directories_and_files_are_shared_live_and_read_only_is_enforced() {
    let Some(hx) = Hx::with_busybox() else { return };
    let host = tempfile::tempdir().unwrap();
    let (ro, rw) = (host.path().join("ro"), host.path().join("rw"));
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("index.html"), "from the host\n").unwrap();
    // A link in a read-only directory reads as one (kubelet's ConfigMaps are made of them).
    std::os::unix::fs::symlink("index.html", ro.join("link")).unwrap();
    let file = host.path().join("app.conf");
    std::fs::write(&file, "setting=1\n").unwrap();
    let missing = host.path().join("made/by/hx");
    let vol = |src: &Path, dst: &str| format!("{}:{dst}", src.display());
    let r = hx.run(&[
        "run", "--rm",
        "-v", &(vol(&ro, "/www") + ":ro"),
        "-v", &vol(&rw, "/out"),
        "-v", &vol(&file, "/etc/app.conf"),
        "-v", &vol(&missing, "/made"),
        BUSYBOX, "sh", "-c",
        "cat /www/link /etc/app.conf; echo written > /out/result; echo x > /made/y; \
         echo setting=2 > /etc/app.conf; touch /www/nope 2>/dev/null && echo WRITABLE || echo read-only",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "from the host\nsetting=1\nread-only\n");
    assert_eq!(
        std::fs::read_to_string(rw.join("result")).unwrap(),
        "written\n"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "setting=2\n");
    assert_eq!(std::fs::read_to_string(missing.join("y")).unwrap(), "x\n");
    assert!(!ro.join("nope").exists());
    assert!(volumes(&hx).is_empty(), "bind mounts make no volumes");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(hx.root().to_str().unwrap()),
        "mounts left under the store:\n{mounts}"
    );

    // A single file is exported to the guest alone: the directory QEMU serves holds only it,
    // not the file's siblings (`-v /etc/hosts:...` must not hand the guest all of /etc).
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "f",
        "-v",
        &vol(&file, "/etc/app.conf"),
        BUSYBOX,
        "sleep",
        "600",
    ]);
    let exported = common::qemu_cmdlines_for(hx.root())
        .iter()
        .flat_map(|args| {
            args.iter()
                .filter(|a| a.starts_with("local,"))
                .filter_map(|a| a.split(',').find_map(|kv| kv.strip_prefix("path=")))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    assert_eq!(exported.len(), 1, "{exported:?}");
    assert_ne!(Path::new(&exported[0]), host.path());
    let entries: Vec<String> = std::fs::read_dir(&exported[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert_eq!(entries, ["app.conf"]);
    assert_eq!(
        std::fs::read_to_string(Path::new(&exported[0]).join("app.conf")).unwrap(),
        "setting=2\n"
    );
    hx.ok(&["rm", "-f", "f"]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(hx.root().to_str().unwrap()),
        "mounts left after rm -f:\n{mounts}"
    );
}

#[test]
fn named_volume_outlives_its_container_and_cannot_be_removed_while_used() {
    let Some(hx) = Hx::with_busybox() else { return };
    assert_eq!(
        hx.ok(&["volume", "create", "--size", "64m", "data"]).stdout,
        "data\n"
    );
    // Creating it again keeps it (docker's behaviour).
    assert_eq!(hx.ok(&["volume", "create", "data"]).stdout, "data\n");
    // A fresh volume is an empty directory, as on docker (no ext4 lost+found: database
    // entrypoints initialise their data directory only when it is empty).
    let r = hx.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data:/data",
        BUSYBOX,
        "sh",
        "-c",
        "echo \"[$(ls -A /data)]\"; echo kept > /data/file",
    ]);
    assert_eq!(r.stdout, "[]\n");
    // A stopped container still holds its volume.
    let r = hx.run(&["volume", "rm", "data"]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (3, "hx: volume data is in use by container writer")
    );
    hx.ok(&["rm", "writer"]);
    let r = hx.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/again:ro",
        BUSYBOX,
        "sh",
        "-c",
        "cat /again/file; touch /again/x 2>/dev/null || echo read-only",
    ]);
    assert_eq!(r.stdout, "kept\nread-only\n");

    // One running VM at a time: an ext4 image mounted twice would be corrupted.
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "-v",
        "data:/data",
        BUSYBOX,
        "sleep",
        "600",
    ]);
    let r = hx.run(&["run", "--rm", "-v", "data:/data", BUSYBOX, "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr
            .contains("volume data is attached to running container holder"),
        "{}",
        r.stderr
    );
    hx.ok(&["rm", "-f", "holder"]);

    let inspect: serde_json::Value =
        serde_json::from_str(&hx.ok(&["volume", "inspect", "data"]).stdout).unwrap();
    assert_eq!(inspect[0]["Name"], "data");
    assert_eq!(inspect[0]["Size"], 64 << 20);
    let ls: serde_json::Value =
        serde_json::from_str(&hx.ok(&["volume", "ls", "--json"]).stdout).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert_eq!(hx.ok(&["volume", "rm", "data"]).stdout, "data\n");
    assert!(volumes(&hx).is_empty());
    assert!(!hx.root().join("volumes/data").exists());
    let r = hx.run(&["volume", "rm", "data"]);
    assert_eq!((r.code, r.stderr.trim()), (1, "hx: no such volume: data"));
    let r = hx.run(&["volume", "inspect", "nosuch"]);
    assert_eq!(r.code, 1);
    let r = hx.run(&["volume", "create", "bad/name"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("invalid volume name \"bad/name\""),
        "{}",
        r.stderr
    );
}

#[test]
fn image_volumes_are_anonymous_filled_from_the_image_and_removed_with_rm_v() {
    let Some(hx) = Hx::with_busybox() else { return };
    // A one-layer image with a VOLUME holding files (busybox-static as its only program).
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("bin")).unwrap();
    std::fs::copy("/bin/busybox", tree.path().join("bin/busybox")).unwrap();
    for l in ["sh", "cat", "ls", "echo", "true"] {
        std::os::unix::fs::symlink("busybox", tree.path().join("bin").join(l)).unwrap();
    }
    std::fs::create_dir_all(tree.path().join("seed")).unwrap();
    std::fs::write(tree.path().join("seed/from-image"), "seeded\n").unwrap();
    hx.ok(&[
        "import",
        tree.path().to_str().unwrap(),
        "vol-image:1",
        "--change",
        "VOLUME /seed",
        "--change",
        "ENV PATH=/bin",
    ]);

    let r = hx.ok(&[
        "run",
        "--name",
        "a",
        "vol-image:1",
        "sh",
        "-c",
        "cat /seed/from-image; echo new > /seed/added",
    ]);
    assert_eq!(r.stdout, "seeded\n");
    let anon = volumes(&hx);
    assert_eq!(anon.len(), 1, "{anon:?}");
    assert_eq!(anon[0].len(), 64, "anonymous volumes have random ids");
    let inspect: serde_json::Value =
        serde_json::from_str(&hx.ok(&["inspect", "a"]).stdout).unwrap();
    assert_eq!(inspect[0]["Mounts"][0]["target"], "/seed");
    assert_eq!(inspect[0]["Mounts"][0]["anonymous"], true);
    hx.ok(&["rm", "-v", "a"]);
    assert!(
        volumes(&hx).is_empty(),
        "rm -v removes the anonymous volume"
    );

    // --rm removes them too; a named volume over the VOLUME path replaces the anonymous one.
    hx.ok(&["run", "--rm", "vol-image:1", "true"]);
    assert!(volumes(&hx).is_empty());
    let r = hx.ok(&[
        "run",
        "--rm",
        "-v",
        "seeded:/seed",
        "vol-image:1",
        "cat",
        "/seed/from-image",
    ]);
    assert_eq!(
        r.stdout, "seeded\n",
        "an empty named volume is filled from the image too"
    );
    assert_eq!(volumes(&hx), vec!["seeded"]);

    // Plain `hx rm` leaves the anonymous volume (docker's rule); prune removes it, not "seeded".
    hx.ok(&["run", "--name", "p", "vol-image:1", "true"]);
    hx.ok(&["rm", "p"]);
    assert_eq!(volumes(&hx).len(), 2);
    let pruned = hx.ok(&["volume", "prune"]).stdout;
    assert!(
        pruned.starts_with("Deleted: ") && pruned.contains("Total reclaimed space"),
        "{pruned}"
    );
    assert_eq!(volumes(&hx), vec!["seeded"]);
    hx.ok(&["volume", "prune", "-a"]);
    assert!(volumes(&hx).is_empty());
}

#[test]
fn bad_volume_arguments_are_refused_before_anything_is_made() {
    let Some(hx) = Hx::with_busybox() else { return };
    for (arg, msg) in [
        ("rel/dir:/x", "invalid volume name \"rel/dir\""),
        (
            "data:relative",
            "invalid volume -v \"data:relative\": the container path must be absolute",
        ),
        (
            "/tmp:/x:rx",
            "invalid volume -v \"/tmp:/x:rx\": mode \"rx\": ro or rw",
        ),
        ("/tmp:/", "cannot mount over the container's root"),
    ] {
        let r = hx.run(&["run", "--rm", "-v", arg, BUSYBOX, "true"]);
        assert_eq!(r.code, 125, "{arg}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("hx: ") && r.stderr.contains(msg),
            "{arg}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1);
    }
    let r = hx.run(&["run", "--rm", "-v", "aa:/x", "-v", "bb:/x", BUSYBOX, "true"]);
    assert_eq!(
        (r.code, r.stderr.trim()),
        (125, "hx: duplicate mount point /x")
    );
    assert!(volumes(&hx).is_empty());
    assert_eq!(hx.ok(&["ps", "-a", "-q"]).stdout, "");
}

#[test]
fn host_directories_as_snapshots_like_xen() {
    let Some(hx) = Hx::with_busybox() else { return };
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("index.html"), "snapshot of the host\n").unwrap();
    let file = host.path().join("app.conf");
    std::fs::write(&file, "setting=1\n").unwrap();
    let run = |args: &[&str]| {
        let mut c = hx.cmd(args);
        c.env("HX_HOST_DIRS", "snapshot");
        common::run_with_timeout(c, std::time::Duration::from_secs(180))
    };
    let dir_ro = format!("{}:/www:ro", host.path().display());
    let file_ro = format!("{}:/etc/app.conf:ro", file.display());
    let r = run(&[
        "run",
        "--name",
        "s",
        "-v",
        &dir_ro,
        "-v",
        &file_ro,
        BUSYBOX,
        "sh",
        "-c",
        "cat /www/index.html /etc/app.conf; touch /www/x 2>/dev/null || echo read-only",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "snapshot of the host\nsetting=1\nread-only\n");
    let dir = serde_json::from_str::<serde_json::Value>(&hx.ok(&["inspect", "s"]).stdout).unwrap()
        [0]["Files"]["Dir"]
        .as_str()
        .unwrap()
        .to_string();
    // Its disk follows the container's writable layer (disk 2: the container outlives its VM).
    assert!(Path::new(&dir).join("snapshot-3.img").is_file());
    hx.ok(&["rm", "s"]);
    assert!(!Path::new(&dir).exists());

    let rw = format!("{}:/www", host.path().display());
    let r = run(&["run", "--rm", "-v", &rw, BUSYBOX, "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr
            .contains("no 9p backend to share a host directory read-write")
            && r.stderr.contains("add :ro"),
        "{}",
        r.stderr
    );
    assert_eq!(hx.ok(&["ps", "-a", "-q"]).stdout, "");
    assert!(
        std::fs::read_dir(hx.root().join("containers"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "a refused run left a directory"
    );
}

#[test]
fn volume_names_with_paths_are_refused_by_every_volume_command() {
    let hx = Hx::new();
    // A directory outside the store's volumes that looks like a volume.
    let victim = hx.root().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(
        victim.join("volume.json"),
        r#"{"name":"victim","created":"2026-01-01T00:00:00Z","size":1}"#,
    )
    .unwrap();
    std::fs::create_dir_all(hx.root().join("volumes")).unwrap();
    for name in [
        "../victim",
        "x/../../victim",
        "..",
        ".rm-victim",
        "a\u{1b}[2J",
    ] {
        for cmd in [
            vec!["volume", "rm", name],
            vec!["volume", "inspect", name],
            vec!["volume", "create", name],
        ] {
            let r = hx.run(&cmd);
            assert_eq!(r.code, 125, "{cmd:?}: {}{}", r.stdout, r.stderr);
            assert!(
                r.stderr.contains("invalid volume name"),
                "{cmd:?}: {}",
                r.stderr
            );
            assert_eq!(r.stdout, "", "{cmd:?}");
            assert!(
                !r.stderr.contains('\u{1b}'),
                "{cmd:?}: raw escape in {:?}",
                r.stderr
            );
        }
    }
    assert!(
        victim.join("volume.json").exists(),
        "the directory outside the store was touched"
    );
}

#[test]
fn a_guest_cannot_plant_setuid_files_device_nodes_or_symlinks_in_a_host_directory() {
    let Some(hx) = Hx::with_busybox() else { return };
    let host = tempfile::tempdir().unwrap();
    cannot_plant(&hx, host.path());
}

/// The same on a filesystem without user xattrs (ramfs, like the Xen lab's dom0; tmpfs before
/// Linux 6.6): the guest's modes go into .virtfs_metadata files instead, and writes work.
#[test]
fn a_guest_cannot_plant_setuid_files_in_a_host_directory_without_xattrs() {
    let Some(hx) = Hx::with_busybox() else { return };
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a ramfs: run it as root"
    );
    let host = tempfile::tempdir().unwrap();
    nix::mount::mount(
        Some("ramfs"),
        host.path(),
        Some("ramfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _u = Unmount(host.path());
    std::fs::write(host.path().join("h"), "from-host\n").unwrap();
    cannot_plant(&hx, host.path());
    let r = hx.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", host.path().display()),
        BUSYBOX,
        "sh",
        "-c",
        "cat /data/h && echo from-guest > /data/g && mkdir -p /data/sub && echo deep > /data/sub/f",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "from-host\n"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("g")).unwrap(),
        "from-guest\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("sub/f")).unwrap(),
        "deep\n"
    );
}

fn cannot_plant(hx: &Hx, out: &Path) {
    let r = hx.run(&[
        "run", "--rm", "-v", &format!("{}:/out", out.display()), BUSYBOX, "sh", "-c",
        "cp /bin/busybox /out/suid && chmod 4755 /out/suid && mknod /out/disk b 8 0 && \
         chmod 666 /out/disk && ln -s /etc/shadow /out/link && mkdir /out/d && chmod 2777 /out/d && \
         ls -ln /out",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // The guest sees what it made (its modes live in xattrs)...
    let line = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or("")
            .to_string()
    };
    assert!(line(" suid").starts_with("-rws"), "{}", r.stdout);
    assert!(line(" disk").starts_with('b'), "{}", r.stdout);
    assert!(
        line(" link -> /etc/shadow").starts_with('l'),
        "{}",
        r.stdout
    );
    // ...the host does not: plain files and directories, no setuid/setgid bit.
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    for name in ["suid", "disk", "link", "d"] {
        let m = std::fs::symlink_metadata(out.join(name)).unwrap();
        let t = m.file_type();
        assert!(t.is_file() || t.is_dir(), "{name}: {t:?} on the host");
        assert!(
            !t.is_block_device() && !t.is_char_device() && !t.is_symlink(),
            "{name}: {t:?}"
        );
        assert_eq!(
            m.permissions().mode() & 0o7000,
            0,
            "{name}: mode {:o} on the host",
            m.permissions().mode()
        );
        assert_eq!(
            m.permissions().mode() & 0o077,
            0,
            "{name}: mode {:o}: others may use it",
            m.permissions().mode()
        );
    }
}

/// A "disk" whose power the test can cut: an ext4 image loop-mounted at `mnt`. What has reached
/// the loop device is in the image file; what the mounted filesystem only holds in its page
/// cache is not. A copy of the image file taken at some instant is the disk as a power cut at
/// that instant leaves it.
struct PowerCut {
    image: std::path::PathBuf,
    mnt: tempfile::TempDir,
    dir: tempfile::TempDir,
}

fn sh(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl PowerCut {
    fn new() -> Option<PowerCut> {
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "the power-cut test needs root in CI"
            );
            eprintln!("SKIP: loop mounts need root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.raw");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(384 << 20)
            .unwrap();
        sh(&["mkfs.ext4", "-q", image.to_str().unwrap()]);
        let mnt = tempfile::tempdir().unwrap();
        let p = PowerCut { image, mnt, dir };
        p.mount(&p.image);
        Some(p)
    }

    fn mount(&self, image: &Path) {
        sh(&[
            "mount",
            "-o",
            "loop",
            image.to_str().unwrap(),
            self.mnt.path().to_str().unwrap(),
        ]);
    }

    /// The power goes now: the disk as it is at this instant is kept aside.
    fn cut(&self) {
        let crashed = self.dir.path().join("crashed.raw");
        sh(&[
            "cp",
            "--sparse=always",
            self.image.to_str().unwrap(),
            crashed.to_str().unwrap(),
        ]);
    }

    /// Back up: the disk kept at the cut replaces the mounted one (its journal replayed on
    /// mount, as after a reboot). Whoever had files open on the old one must be gone.
    fn reboot(&self) {
        sh(&["umount", self.mnt.path().to_str().unwrap()]);
        self.mount(&self.dir.path().join("crashed.raw"));
    }
}

impl Drop for PowerCut {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.mnt.path())
            .status();
    }
}

/// What this shows: data a guest wrote to a named volume and `sync`ed has reached the host's
/// block device by the time the guest's sync returns: the test takes the disk as a power cut
/// would leave it right after the workload reports its sync, and the data is there after the
/// "reboot". With cache=unsafe QEMU ignored the guest's flush: the data sat dirty in the host's
/// page cache, not on the disk. What it cannot show: the host disk's own volatile write cache
/// (the loop device turns the flush into an fsync of its image file, which the copy reads from
/// the page cache).
#[test]
fn a_volume_write_the_guest_synced_survives_a_host_power_cut() {
    let Some(hx) = Hx::with_busybox() else { return };
    let Some(power) = PowerCut::new() else { return };
    let vols = power.mnt.path().join("volumes");
    std::fs::create_dir_all(&vols).unwrap();
    std::os::unix::fs::symlink(&vols, hx.root().join("volumes")).unwrap();
    hx.ok(&["volume", "create", "--size", "128m", "data"]);
    sh(&["sync", "-f", vols.to_str().unwrap()]);
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "w",
        "-v",
        "data:/data",
        BUSYBOX,
        "sh",
        "-c",
        "seq 1 20000 > /data/f && sync && echo synced && sleep 600",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !hx.ok(&["logs", "w"]).stdout.contains("synced") {
        assert!(
            std::time::Instant::now() < deadline,
            "no sync reported: {}",
            hx.run(&["logs", "w"]).stderr
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    power.cut();
    hx.ok(&["rm", "-f", "w"]);
    power.reboot();
    let r = hx.run(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        BUSYBOX,
        "sh",
        "-c",
        "wc -l < /data/f; tail -1 /data/f",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "20000\n20000\n"),
        "{}",
        r.stderr
    );
}

/// `hx volume snapshot` of a volume a running container keeps writing to: the guest's
/// filesystem is frozen for the copy, so the snapshot holds whole records; it is a volume
/// (listed, mounted, removed like one) that says what it copies; `create --from-snapshot`
/// starts a volume from it.
#[test]
fn live_volume_snapshots() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&["volume", "create", "--size", "64m", "db"]);
    // Appends numbered 4 KiB records as fast as it can.
    let writer = "i=0; echo ready; while true; do i=$((i+1)); \
                  printf '%4095s\\n' $i >> /data/log; done";
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "w",
        "--network",
        "none",
        "-v",
        "db:/data",
        BUSYBOX,
        "sh",
        "-c",
        writer,
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !hx.ok(&["logs", "w"]).stdout.contains("ready") {
        assert!(std::time::Instant::now() < deadline, "never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        hx.ok(&["volume", "snapshot", "db", "db-1"]).stdout,
        "db-1\n"
    );
    // The writer goes on after the thaw.
    assert_eq!(hx.ok(&["exec", "w", "true"]).code, 0);
    // Frozen means flushed: the copy's ext4 is clean (no journal to replay), which a copy of a
    // live filesystem is not.
    let info: serde_json::Value =
        serde_json::from_str(&hx.ok(&["volume", "inspect", "db-1"]).stdout).unwrap();
    let disk = info[0]["Mountpoint"].as_str().unwrap().to_string();
    let header = std::process::Command::new("dumpe2fs")
        .args(["-h", &disk])
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&header.stdout);
    assert!(
        header.contains("Filesystem state:         clean"),
        "{header}"
    );
    assert!(!header.contains("needs_recovery"), "{header}");
    let fsck = std::process::Command::new("e2fsck")
        .args(["-fn", &disk])
        .output()
        .unwrap();
    assert_eq!(
        fsck.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    // The numbered lines run without a gap up to the snapshot's moment.
    let lines = |v: &str| -> String {
        hx.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{v}:/data:ro"),
            BUSYBOX,
            "sh",
            "-c",
            "n=$(wc -l < /data/log); echo $n; sed -n \"${n}p\" /data/log | tr -d ' '",
        ])
        .stdout
    };
    let snap = lines("db-1");
    let mut it = snap.lines();
    let (n, last) = (it.next().unwrap(), it.next().unwrap());
    assert!(n != "0" && n == last, "{snap}");
    assert_eq!(info[0]["SnapshotOf"], "db");
    assert!(hx.ok(&["volume", "ls", "-q"]).stdout.contains("db-1\n"));
    // A volume from the snapshot holds what the snapshot holds.
    hx.ok(&["volume", "create", "--from-snapshot", "db-1", "db-copy"]);
    assert_eq!(lines("db-copy"), snap);
    // A snapshot killed at any moment: the guest thaws (the writer goes on), and there is no
    // half volume — the snapshot exists whole or not at all.
    for after_ms in [30, 80, 150, 300] {
        let mut killed = hx
            .cmd(&["volume", "snapshot", "db", "db-k"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(after_ms));
        killed.kill().unwrap();
        killed.wait().unwrap();
        // A write on the volume returns (done, or refused once the writer filled it) instead of
        // waiting for the guest's 60-s freeze limit.
        let mut probe = hx
            .cmd(&["exec", "w", "sh", "-c", "echo x > /data/probe"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while probe.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = probe.kill();
                panic!("still frozen {after_ms} ms into a killed snapshot");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let listed = volumes(&hx);
        let stray: Vec<_> = std::fs::read_dir(hx.root().join("volumes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(stray.is_empty(), "{stray:?} after {listed:?}");
        if listed.iter().any(|v| v == "db-k") {
            let (n, last) = {
                let out = lines("db-k");
                let mut it = out.lines().map(String::from);
                (it.next().unwrap(), it.next().unwrap())
            };
            assert_eq!(n, last, "a snapshot that exists is whole");
            hx.ok(&["volume", "rm", "db-k"]);
        }
    }
    let r = hx.run(&["volume", "create", "--from-snapshot", "db", "db-2"]);
    assert_eq!(
        r.code, 3,
        "a volume a running container writes: {}",
        r.stderr
    );
    hx.ok(&["rm", "-f", "w"]);
    hx.ok(&["volume", "rm", "db-1", "db-copy", "db"]);
    assert_eq!(volumes(&hx), Vec::<String>::new());
}
