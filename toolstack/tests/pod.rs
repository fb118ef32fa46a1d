//! Pods on QEMU (docs/pods.md), end to end in one pod VM: a published port of the pod reaches
//! a member's server; members share localhost and the hostname but not their root
//! filesystems; a short-lived member's exit code is its own and leaves the pod and the other
//! member running; exec, logs, stop, ps and pod ps per member; `hx pod rm -f` leaves no QEMU,
//! keeper, record, tap, port rule or address. A member's host directories, files and tmpfs
//! mounts, live and `:ro` as asked, leave no mount behind; its named volumes keep their data
//! for the next member; a `-it` member follows its terminal's resizes.
mod common;
use common::netns::{NetLab, CLIENT_IP, HOST_IP};
use common::{term::Terminal, Hx, BUSYBOX};
use std::time::Duration;

/// The keepers (`hx __pod-member DIR`) of the store at `root`.
fn keepers_for(root: &std::path::Path) -> Vec<String> {
    let root = root.to_string_lossy().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let s = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if s.contains("__pod-member") && s.contains(&root) {
                found.push(s);
            }
        }
    }
    found
}

fn keeper_pid(root: &std::path::Path, id: &str) -> i32 {
    let dir = root
        .join("containers")
        .join(id)
        .to_string_lossy()
        .to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let s = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if s.contains("__pod-member") && s.contains(&dir) {
                return e.file_name().to_string_lossy().parse().unwrap();
            }
        }
    }
    panic!("no keeper for {id}");
}

#[test]
fn a_pod_shares_one_vm_network_and_hostname_between_containers_with_their_own_roots() {
    let hx = Hx::new();
    if !hx.has_guest() {
        return;
    }
    let Some(lab) = NetLab::new(&hx) else { return };
    hx.load_busybox();
    let port = "8093";
    lab.hx_ok(
        &hx,
        &["pod", "create", "--name", "p", "-p", &format!("{port}:80")],
    );
    lab.hx_ok(
        &hx,
        &[
            "run",
            "-d",
            "--pod",
            "p",
            "--name",
            "web",
            BUSYBOX,
            "sh",
            "-c",
            "echo web-root > /marker && mkdir -p /www && echo hello-pod > /www/index.html \
             && echo web-started && exec httpd -f -p 80 -h /www",
        ],
    );
    // Another member: the server over localhost, its own root, the pod's hostname, its own
    // exit code.
    let short = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            BUSYBOX,
            "sh",
            "-c",
            "for i in $(seq 100); do wget -qO- http://localhost:80/ && break; sleep 0.1; done; \
             test -e /marker && echo marker-seen || echo no-marker; echo host=$(hostname); exit 3",
        ],
    );
    assert_eq!(short.code, 3, "{}{}", short.stdout, short.stderr);
    assert!(short.stdout.contains("hello-pod"), "{}", short.stdout);
    assert!(short.stdout.contains("no-marker"), "{}", short.stdout);
    assert!(short.stdout.contains("host=p"), "{}", short.stdout);

    // The pod's published port reaches the member's server from another machine.
    let page = lab.wait_for_client(
        &format!("http://{HOST_IP}:{port}/"),
        Duration::from_secs(20),
    );
    assert!(page.contains("hello-pod"), "{page}");
    let _ = CLIENT_IP;

    // exec runs in the member's root, with the pod's hostname.
    let exec = lab.hx_ok(&hx, &["exec", "web", "sh", "-c", "cat /marker; hostname"]);
    assert_eq!(exec.stdout, "web-root\np\n");
    // A member is confined as a docker container is, not given the pod VM: docker's
    // capabilities (no mount), its own PID namespace whose init is its workload (no
    // /proc/PID/root into another member), none of the pod VM's disks in its /dev (where the
    // other members' layers are), a read-only /sys.
    let exec = lab.hx(
        &hx,
        &[
            "exec",
            "web",
            "sh",
            "-c",
            "grep CapBnd /proc/self/status; mount -t tmpfs none /tmp || echo no-mount; \
             cat /proc/1/comm; ls /dev | grep -c -E '^(sd|vd|xvd)'; \
             grep -c '^sysfs /sys sysfs ro,' /proc/mounts; \
             echo 0 2>/dev/null > /proc/sys/vm/overcommit_memory || echo ro-proc-sys",
        ],
    );
    assert_eq!(
        exec.stdout, "CapBnd:\t00000000a80425fb\nno-mount\nhttpd\n0\n1\nro-proc-sys\n",
        "{}",
        exec.stderr
    );
    // Terminals: each member's come from a devpts instance of its own, so a member's root
    // (CAP_DAC_OVERRIDE) cannot open another's terminal to read or type into it. `tty` holds
    // /dev/pts/0 of its own; web's /dev/pts shows none of it.
    lab.hx_ok(
        &hx,
        &[
            "run", "-d", "-t", "--pod", "p", "--name", "tty", BUSYBOX, "sleep", "600",
        ],
    );
    let own = lab.hx_ok(
        &hx,
        &[
            "exec",
            "tty",
            "sh",
            "-c",
            "ls -1 /dev/pts; tty </proc/1/fd/0",
        ],
    );
    assert_eq!(own.stdout, "0\nptmx\n/dev/pts/0\n");
    let other = lab.hx_ok(&hx, &["exec", "web", "ls", "-1", "/dev/pts"]);
    assert_eq!(other.stdout, "ptmx\n");
    let t = lab.hx_ok(&hx, &["exec", "-t", "web", "tty"]);
    assert_eq!(t.stdout, "/dev/pts/0\r\n");
    lab.hx_ok(&hx, &["rm", "-f", "tty"]);
    // --pids-limit: the member's cgroup's pids.max; a fork past it fails, the pod runs on.
    let pids = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            "--pids-limit",
            "5",
            BUSYBOX,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids.max; for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait",
        ],
    );
    assert_eq!(pids.stdout, "5\n", "{}", pids.stderr);
    assert!(pids.stderr.contains("can't fork"), "{}", pids.stderr);
    // --privileged: every capability and the pod VM's devices, still its own PID namespace.
    let privileged = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            "--privileged",
            BUSYBOX,
            "sh",
            "-c",
            "mount -t tmpfs none /tmp && echo mounted; ls /dev | grep -c -E '^(sd|vd|xvd)' \
             >/dev/null && echo disks; echo pid=$$",
        ],
    );
    assert_eq!(
        (privileged.code, privileged.stdout.as_str()),
        (0, "mounted\ndisks\npid=1\n"),
        "{}",
        privileged.stderr
    );
    // CAP_SYS_ADMIN without --privileged can mount a filesystem without nodev and make a node
    // of the pod VM's first disk there (where other members' files are); its device cgroup
    // still refuses to open it, as runc's does, and leaves /dev/null alone.
    let admin = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            "--cap-add",
            "SYS_ADMIN",
            BUSYBOX,
            "sh",
            "-c",
            "mkdir /tmp/m && mount -t tmpfs none /tmp/m && echo mounted; \
             d=$(ls /sys/block | grep -E '^(sd|vd|xvd)' | head -n 1); m=$(cat /sys/block/$d/dev); \
             mknod /tmp/m/disk b ${m%:*} ${m#*:} && echo made; \
             head -c 1 /tmp/m/disk 2>&1 >/dev/null | grep -o 'Operation not permitted'; \
             echo x >/dev/null && echo null-ok",
        ],
    );
    assert_eq!(
        (admin.code, admin.stdout.as_str()),
        (0, "mounted\nmade\nOperation not permitted\nnull-ok\n"),
        "{}",
        admin.stderr
    );
    // A confined member's tmpfs is nodev whatever it asks (a node it makes there opens
    // nothing); an image whose /dev is a symlink out of its root is refused, naming it, and
    // the pod runs on.
    let r = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            "--tmpfs",
            "/scratch:dev",
            BUSYBOX,
            "sh",
            "-c",
            "grep ' /scratch ' /proc/mounts | grep -c nodev",
        ],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "1\n"), "{}", r.stderr);
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("bin")).unwrap();
    std::fs::copy("/bin/busybox", tree.path().join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", tree.path().join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("/dev", tree.path().join("dev")).unwrap();
    hx.ok(&["import", tree.path().to_str().unwrap(), "devlink:1"]);
    let r = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            "devlink:1",
            "/bin/sh",
            "-c",
            "true",
        ],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("/dev is not a directory"), "{}", r.stderr);
    let logs = lab.hx_ok(&hx, &["logs", "web"]);
    assert!(logs.stdout.contains("web-started"), "{}", logs.stdout);

    // -i: a member's stdin to its end, then its own exit code.
    let mut child = lab
        .hx_cmd(
            &hx,
            &[
                "run",
                "-i",
                "--rm",
                "--pod",
                "p",
                BUSYBOX,
                "sh",
                "-c",
                "cat; echo end-of-input; exit 4",
            ],
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(b"line1\nline2\n").unwrap();
    }
    let r = common::wait_with_timeout(child, std::time::Duration::from_secs(180));
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (4, "line1\nline2\nend-of-input\n"),
        "{}",
        r.stderr
    );

    let ps = lab.hx_ok(&hx, &["ps"]);
    assert!(
        ps.stdout.lines().next().unwrap().contains("POD"),
        "{}",
        ps.stdout
    );
    let web_row = ps
        .stdout
        .lines()
        .find(|l| l.ends_with(" web"))
        .unwrap_or("");
    assert!(web_row.contains(" p "), "{}", ps.stdout);
    let pods = lab.hx_ok(&hx, &["pod", "ps"]);
    let row = pods
        .stdout
        .lines()
        .find(|l| l.starts_with("p "))
        .unwrap_or("");
    assert!(
        row.contains("Running") && row.contains("1/1") && row.contains("web"),
        "{}",
        pods.stdout
    );

    // What belongs to the pod is refused for a member, in one line.
    let refused = lab.hx(
        &hx,
        &["run", "--rm", "--pod", "p", "-p", "81:80", BUSYBOX, "true"],
    );
    assert_eq!(refused.code, 125, "{}", refused.stderr);
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("belongs to the pod"),
        "{}",
        refused.stderr
    );

    // Each member's limits inside the pod's VM (a cgroup each): `-m` is the member's own
    // memory limit, which the OOM killer enforces on it alone (busybox's tail buffers its whole
    // input: 64 MiB here), shown to it at /sys/fs/cgroup; without `-m` the pod VM's memory is
    // the limit; `hx update` changes a running member's memory and CPU cap in place.
    let hog = "head -c 64m /dev/zero | tail >/dev/null";
    let free = lab.hx(
        &hx,
        &["run", "--rm", "--pod", "p", BUSYBOX, "sh", "-c", hog],
    );
    assert_eq!(free.code, 0, "{}{}", free.stdout, free.stderr);
    let capped = lab.hx(
        &hx,
        &[
            "run",
            "--pod",
            "p",
            "--name",
            "capped",
            "-m",
            "32m",
            BUSYBOX,
            "sh",
            "-c",
            &format!("cat /sys/fs/cgroup/memory.max; {hog}"),
        ],
    );
    assert_eq!(capped.code, 137, "{}{}", capped.stdout, capped.stderr);
    assert_eq!(capped.stdout, format!("{}\n", 32 << 20));
    // Its shell ended by itself (137: its tail was killed): not an OOM kill of the workload.
    let state = "{{.State.ExitCode}} {{.State.OOMKilled}}";
    let st = lab.hx_ok(&hx, &["inspect", "-f", state, "capped"]);
    assert_eq!(st.stdout.trim(), "137 false");
    lab.hx_ok(&hx, &["rm", "capped"]);
    // The workload itself killed by the OOM killer: docker's State.OOMKilled.
    let oom = lab.hx(
        &hx,
        &[
            "run",
            "--pod",
            "p",
            "--name",
            "hog",
            "-m",
            "32m",
            BUSYBOX,
            "sh",
            "-c",
            "exec tail < /dev/zero",
        ],
    );
    assert_eq!(oom.code, 137, "{}{}", oom.stdout, oom.stderr);
    let st = lab.hx_ok(&hx, &["inspect", "-f", state, "hog"]);
    assert_eq!(st.stdout.trim(), "137 true");
    lab.hx_ok(&hx, &["rm", "hog"]);
    lab.hx_ok(
        &hx,
        &[
            "run", "-d", "--pod", "p", "--name", "tuned", BUSYBOX, "sleep", "600",
        ],
    );
    let limits = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight";
    let before = lab.hx_ok(&hx, &["exec", "tuned", "sh", "-c", limits]);
    assert_eq!(before.stdout, "max\nmax 100000\n100\n");
    lab.hx_ok(
        &hx,
        &[
            "update",
            "-m",
            "40m",
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "tuned",
        ],
    );
    let after = lab.hx_ok(&hx, &["exec", "tuned", "sh", "-c", limits]);
    assert_eq!(after.stdout, format!("{}\n50000 100000\n20\n", 40 << 20));
    let oom = lab.hx(&hx, &["exec", "tuned", "sh", "-c", hog]);
    assert_eq!(oom.code, 137, "{}{}", oom.stdout, oom.stderr);
    let still = lab.hx_ok(&hx, &["exec", "tuned", "echo", "alive"]);
    assert_eq!(
        still.stdout, "alive\n",
        "the member outlives its OOM-killed exec"
    );
    let inspect = lab.hx_ok(&hx, &["inspect", "-f", "{{.HostConfig.Memory}}", "tuned"]);
    assert_eq!(inspect.stdout.trim(), (40u64 << 20).to_string());
    // `hx stats` of a member: its own group's memory, limit and processes, not the pod VM's.
    let stats = lab.hx_ok(&hx, &["stats", "--no-stream", "--json", "tuned"]);
    let rows: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["mem_limit"], 40u64 << 20, "{row}");
    assert_eq!(row["pids"], 1, "only its sleep: {row}");
    let used = row["mem_used"].as_u64().unwrap();
    assert!(used > 0 && used < 8 << 20, "a sleep's memory: {row}");
    // --pid container:NAME (docker's): born in tuned's PID namespace, whose init is tuned's
    // sleep; inspect says whose.
    lab.hx_ok(
        &hx,
        &[
            "create",
            "--pod",
            "p",
            "--name",
            "peer",
            "--pid",
            "container:tuned",
            BUSYBOX,
            "sh",
            "-c",
            "tr '\\0' ' ' </proc/1/cmdline",
        ],
    );
    let tuned_id = lab
        .hx_ok(&hx, &["inspect", "-f", "{{.Id}}", "tuned"])
        .stdout;
    let mode = lab.hx_ok(&hx, &["inspect", "-f", "{{.HostConfig.PidMode}}", "peer"]);
    assert_eq!(mode.stdout.trim(), format!("container:{}", tuned_id.trim()));
    let peer = lab.hx(&hx, &["start", "-a", "peer"]);
    assert_eq!(
        (peer.code, peer.stdout.trim()),
        (0, "sleep 600"),
        "{}",
        peer.stderr
    );
    lab.hx_ok(&hx, &["rm", "peer"]);
    lab.hx_ok(&hx, &["rm", "-f", "tuned"]);

    // A member whose keeper is killed ends (the guest kills its workload), its disks are
    // unplugged, and the next member still runs.
    lab.hx_ok(
        &hx,
        &[
            "run", "-d", "--pod", "p", "--name", "doomed", BUSYBOX, "sleep", "600",
        ],
    );
    let keeper: Vec<String> = keepers_for(hx.root())
        .into_iter()
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(keeper.len(), 2, "{keeper:?}");
    let doomed_id = lab
        .hx_ok(&hx, &["inspect", "-f", "{{.Id}}", "doomed"])
        .stdout;
    let doomed_pid = keeper_pid(hx.root(), doomed_id.trim());
    unsafe { libc::kill(doomed_pid, libc::SIGKILL) };
    lab.hx_ok(&hx, &["rm", "doomed"]);
    let after = lab.hx_ok(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            BUSYBOX,
            "sh",
            "-c",
            "ps | grep -c 'sleep 60[0]'; ls /sys/block",
        ],
    );
    assert!(
        after.stdout.starts_with("0\n"),
        "the killed member's workload runs on: {}",
        after.stdout
    );
    assert_eq!(
        after.stdout.lines().filter(|l| l.starts_with("sd")).count(),
        3,
        "web's two disks and this member's image, not the killed member's: {}",
        after.stdout
    );

    // A member's host directories and files, live both ways, `:ro` enforced, and a tmpfs;
    // nothing of them stays mounted once it has exited, in the host or in the pod's QEMU.
    let vols = tempfile::tempdir().unwrap();
    let data = vols.path().join("data");
    let rodir = vols.path().join("rodir");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&rodir).unwrap();
    std::fs::write(data.join("in.txt"), "from-host\n").unwrap();
    std::fs::write(rodir.join("keep"), "kept\n").unwrap();
    let conf = vols.path().join("app.conf");
    std::fs::write(&conf, "setting=1\n").unwrap();
    let v = |src: &std::path::Path, dst: &str| format!("{}:{dst}", src.display());
    let vol = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            "-v",
            &v(&data, "/data"),
            "-v",
            &v(&rodir, "/ro:ro"),
            "-v",
            &v(&conf, "/etc/app.conf:ro"),
            "--tmpfs",
            "/scratch",
            BUSYBOX,
            "sh",
            "-c",
            "cat /data/in.txt /ro/keep /etc/app.conf; echo from-member > /data/out.txt; \
             (echo x > /etc/app.conf) 2>/dev/null && echo file-writable || echo file-ro; \
             touch /ro/new 2>/dev/null && echo dir-writable || echo dir-ro; \
             grep -c ' /scratch tmpfs' /proc/mounts",
        ],
    );
    assert_eq!(vol.code, 0, "{}{}", vol.stdout, vol.stderr);
    assert_eq!(
        vol.stdout, "from-host\nkept\nsetting=1\nfile-ro\ndir-ro\n1\n",
        "{}",
        vol.stderr
    );
    assert_eq!(
        std::fs::read_to_string(data.join("out.txt")).unwrap(),
        "from-member\n"
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "setting=1\n");
    assert!(!rodir.join("new").exists());
    let qemu = common::qemu_pids_for(hx.root());
    assert_eq!(qemu.len(), 1);
    let in_vm = std::fs::read_to_string(format!("/proc/{}/mountinfo", qemu[0])).unwrap();
    assert!(
        !in_vm.contains("/members/"),
        "binds left in the pod's VM: {in_vm}"
    );
    let in_host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !in_host.contains(&*hx.root().to_string_lossy()),
        "mounts left on the host: {in_host}"
    );
    // Named volumes: a disk hot-plugged with the member's own, kept across members; a fresh
    // one receives the image's files at its path first (docker's copy-up); `:ro` holds.
    let w = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            "-v",
            "podvol:/data",
            "-v",
            "podetc:/etc",
            BUSYBOX,
            "sh",
            "-c",
            "echo kept > /data/f && test -s /etc/passwd && echo copied-up",
        ],
    );
    assert_eq!(
        (w.code, w.stdout.as_str()),
        (0, "copied-up\n"),
        "{}",
        w.stderr
    );
    let r = lab.hx(
        &hx,
        &[
            "run",
            "--rm",
            "--pod",
            "p",
            "-v",
            "podvol:/data:ro",
            BUSYBOX,
            "sh",
            "-c",
            "cat /data/f; (echo x > /data/f) 2>/dev/null && echo writable || echo read-only",
        ],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "kept\nread-only\n"),
        "{}",
        r.stderr
    );
    let listed = lab.hx_ok(&hx, &["volume", "ls", "-q"]).stdout;
    assert!(listed.lines().any(|l| l == "podvol"), "{listed}");

    // -it: a member on a terminal of the caller's size, following its resizes (hx run's
    // SIGWINCH → the member's keeper → its exec session in the guest).
    let mut t = Terminal::spawn_cmd(
        lab.hx_cmd(&hx, &["run", "--rm", "-it", "--pod", "p", BUSYBOX, "sh"]),
        30,
        100,
    );
    t.expect("/ # ");
    t.send(b"stty size\r");
    t.expect("30 100\r\n");
    t.resize_seen(40, 120);
    t.send(b"exit 3\r");
    let r = t.wait();
    assert_eq!(r.code, 3, "{:?}", r.stdout);

    // A member's stop ends only that member; the pod's VM runs on.
    lab.hx_ok(&hx, &["stop", "-t", "2", "web"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&lab.hx_ok(&hx, &["inspect", "web"]).stdout).unwrap();
    assert_eq!(inspect[0]["State"]["Running"], false);
    let pods = lab.hx_ok(&hx, &["pod", "ps"]);
    let row = pods
        .stdout
        .lines()
        .find(|l| l.starts_with("p "))
        .unwrap_or("");
    assert!(
        row.contains("Running") && row.contains("0/1"),
        "{}",
        pods.stdout
    );
    assert_eq!(common::qemu_processes_for(hx.root()), 1);

    let refused = lab.hx(&hx, &["pod", "rm", "p"]);
    assert_ne!(refused.code, 0, "a running pod is removed only with -f");
    assert!(
        refused.stderr.contains("hx pod rm -f"),
        "{}",
        refused.stderr
    );
    lab.hx_ok(&hx, &["pod", "rm", "-f", "p"]);
    assert_eq!(common::qemu_processes_for(hx.root()), 0, "QEMU left");
    assert_eq!(keepers_for(hx.root()), Vec::<String>::new(), "keepers left");
    assert_eq!(lab.hx_ok(&hx, &["ps", "-aq"]).stdout, "", "records left");
    assert_eq!(lab.hx_ok(&hx, &["pod", "ps", "-q"]).stdout, "");
    assert_eq!(lab.publish_rules(), Vec::<String>::new(), "port rules left");
    assert_eq!(lab.container_links(), Vec::<String>::new(), "taps left");
    assert_eq!(lab.leases(&hx), Vec::new(), "addresses left");
    let missing = lab.hx(&hx, &["run", "--rm", "--pod", "p", BUSYBOX, "true"]);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("no such pod: p"),
        "{}",
        missing.stderr
    );
}

/// `hx pod create --share +pid` (podman's): the members see each other's processes (one PID
/// namespace, the pod VM's); `--share` lists one VM cannot honour are refused.
#[test]
fn a_pod_made_with_share_pid_gives_its_members_one_pid_namespace() {
    let hx = Hx::new();
    if !hx.has_guest() {
        return;
    }
    hx.load_busybox();
    for (share, want) in [
        ("net", "always share its ipc namespace"),
        ("+mnt", "unknown or unsupported namespace \"mnt\""),
    ] {
        let r = hx.run(&["pod", "create", "--name", "bad", "--share", share]);
        assert_eq!(r.code, 125, "--share {share}: {}", r.stderr);
        assert!(r.stderr.contains(want), "--share {share}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    assert_eq!(
        hx.ok(&["pod", "ps", "-q"]).stdout,
        "",
        "a refused pod was made"
    );
    hx.ok(&[
        "pod",
        "create",
        "--name",
        "sp",
        "--network",
        "none",
        "--share",
        "+pid",
    ]);
    let inspect: serde_json::Value =
        serde_json::from_str(&hx.ok(&["pod", "inspect", "sp"]).stdout).unwrap();
    assert_eq!(
        inspect[0]["SharedNamespaces"],
        serde_json::json!(["ipc", "net", "uts", "pid"])
    );
    hx.ok(&[
        "run", "-d", "--pod", "sp", "--name", "sleeper", BUSYBOX, "sleep", "600",
    ]);
    let mode = hx.ok(&["inspect", "-f", "{{.HostConfig.PidMode}}", "sleeper"]);
    assert_eq!(mode.stdout.trim(), "pod");
    let r = hx.run(&[
        "run",
        "--rm",
        "--pod",
        "sp",
        BUSYBOX,
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -c '^sleep 600'",
    ]);
    assert_eq!((r.code, r.stdout.trim()), (0, "1"), "{}", r.stderr);
    hx.ok(&["pod", "rm", "-f", "sp"]);
    assert_eq!(common::qemu_processes_for(hx.root()), 0);
}
