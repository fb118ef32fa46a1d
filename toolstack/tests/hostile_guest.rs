//! A hostile guest on the QEMU backend: instead of pv-init the initramfs carries a small static
//! init built here (HX_INIT), which writes what a compromised guest could: escape sequences on
//! the console and the status port, floods on every channel, invalid UTF-8, out-of-range exit
//! values. And a hostile image (escape sequences in its CMD and `created`). What the user sees
//! must stay safe: no raw control bytes from the guest or image on hx's own output, log files
//! within their caps, hx's memory independent of log sizes, 125 for statuses the protocol does
//! not allow.
mod common;
use common::{run_with_timeout, shared_image, Hx, Run, BUSYBOX};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What every hostile init starts with: /dev and /sys, a port lookup, write-all, power off.
const PRELUDE: &str = r#"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void wr(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        c += w; n -= (size_t)w;
    }
}
static void put(int fd, const char *s) { wr(fd, s, strlen(s)); }
static int port(const char *want) {
    for (int tries = 0; tries < 500; tries++) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char p[300], name[64];
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
            int fd = open(p, O_RDONLY);
            if (fd < 0) continue;
            ssize_t n = read(fd, name, sizeof name - 1);
            close(fd);
            if (n <= 0) continue;
            name[n] = 0;
            if (name[n - 1] == '\n') name[n - 1] = 0;
            if (strcmp(name, want) == 0) {
                snprintf(p, sizeof p, "/dev/%s", e->d_name);
                closedir(d);
                return open(p, O_WRONLY);
            }
        }
        if (d) closedir(d);
        usleep(10000);
    }
    return -1;
}
/* `total` bytes of numbered lines, in 64 KiB writes, `pause_us` between writes. */
static void flood(int fd, long total, long pause_us) {
    static char buf[65536];
    long line = 0, done = 0;
    while (done < total) {
        size_t n = 0;
        while (n + 32 < sizeof buf && done + (long)n < total)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "line %010ld\n", line++);
        wr(fd, buf, n);
        done += (long)n;
        if (pause_us) usleep(pause_us);
    }
}
static void off(void) { sync(); reboot(RB_POWER_OFF); }
static int con;
static void setup(void) {
    mkdir("/sys", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", 0, "mode=0755");
    mount("sysfs", "/sys", "sysfs", 0, 0);
    con = open("/dev/ttyS0", O_WRONLY | O_NOCTTY);
}
"#;

/// A static init running `body` (C statements) between setup and power-off.
fn hostile_init(dir: &Path, name: &str, body: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(
        &src,
        format!("{PRELUDE}\nint main(void) {{ setup(); {body}\n off(); return 0; }}\n"),
    )
    .unwrap();
    let out = std::process::Command::new("cc")
        .args(["-static", "-Os", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("cc (apt-get install gcc libc6-dev)");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn run_with_init(hx: &Hx, init: &Path, args: &[&str]) -> Run {
    let mut c = hx.cmd(args);
    c.env("HX_INIT", init);
    run_with_timeout(c, Duration::from_secs(240))
}

/// No raw control bytes (other than line structure) and no bidi overrides.
fn assert_terminal_safe(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "{what} carries raw {bad:?}: {text:?}");
}

/// A log within its `[log]` cap: each of its two files at most `max` bytes, no third file.
fn assert_capped(dir: &Path, stream: &str, max: u64) {
    for f in [stream.to_string(), format!("{stream}.1")] {
        let len = std::fs::metadata(dir.join(&f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len <= max, "{f}: {len} bytes > {max}");
    }
    assert!(
        !dir.join(format!("{stream}.2")).exists(),
        "{stream}: a third file"
    );
}

fn container_dir(hx: &Hx, name: &str) -> PathBuf {
    let r = hx.ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    PathBuf::from(v[0]["Files"]["Dir"].as_str().unwrap())
}

/// Log relays still running for this store (they must end with their VM).
fn relays_for(root: &Path) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let s = String::from_utf8_lossy(&cmd);
            let zombie = std::fs::read_to_string(e.path().join("stat"))
                .unwrap_or_default()
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'));
            s.contains("__log-relay") && s.contains(&*root.to_string_lossy()) && !zombie
        })
        .count()
}

#[test]
fn escape_sequences_from_the_guest_are_escaped_in_hx_messages() {
    let Some(hx) = Hx::with_busybox() else { return };
    let work = tempfile::tempdir().unwrap();
    // A fake panic line: title change, screen clear, 8-bit CSI, bidi override.
    let panic = hostile_init(
        work.path(),
        "panic",
        r#"put(con, "Kernel panic - not syncing: \x1b]0;pwned\x07\x1b[2J\xc2\x9b" "31m\xe2\x80\xae" "evil\n");"#,
    );
    let r = run_with_init(&hx, &panic, &["run", "--rm", BUSYBOX, "true"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("guest kernel panicked: \\x1b]0;pwned\\x07\\x1b[2J\\u009b31m\\u202eevil"),
        "{:?}",
        r.stderr
    );
    assert_terminal_safe("hx run's panic report", &r.stderr);

    // An init error whose message is JSON-escaped control characters.
    let init_error = hostile_init(
        work.path(),
        "init-error",
        r#"int s = port("hx.status");
        put(s, "{\"event\":\"init_error\",\"code\":127,\"message\":\"\\u001b[2J\\u001b]0;x\\u0007\\u009b\\u202efake\"}\n");"#,
    );
    let r = run_with_init(&hx, &init_error, &["run", "--name", "ie", BUSYBOX, "true"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert_eq!(r.stderr, "hx: \\x1b[2J\\x1b]0;x\\x07\\u009b\\u202efake\n");
    // Listings and inspect of that container: the same, and --json stays valid with the value.
    let ps = hx.ok(&["ps", "-a"]);
    assert_terminal_safe("hx ps", &ps.stdout);
    let inspect = hx.ok(&["inspect", "ie"]);
    assert_terminal_safe("hx inspect", &inspect.stdout);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(
        v[0]["State"]["Error"],
        "\u{1b}[2J\u{1b}]0;x\u{7}\u{9b}\u{202e}fake"
    );
    hx.ok(&["rm", "ie"]);
}

#[test]
fn out_of_range_and_undecodable_statuses() {
    let Some(hx) = Hx::with_busybox() else { return };
    let work = tempfile::tempdir().unwrap();
    for (name, line, why) in [
        (
            "sig",
            r#"{\"event\":\"signaled\",\"signal\":2147483647}\n"#,
            "signaled: signal 2147483647 is outside 1..=64",
        ),
        (
            "neg",
            r#"{\"event\":\"exited\",\"code\":-255}\n"#,
            "exited: code -255 is outside 0..=255",
        ),
        (
            "big",
            r#"{\"event\":\"exited\",\"code\":256}\n"#,
            "exited: code 256 is outside 0..=255",
        ),
    ] {
        let init = hostile_init(
            work.path(),
            name,
            &format!(r#"int s = port("hx.status"); put(s, "{line}");"#),
        );
        let r = run_with_init(&hx, &init, &["run", "--rm", BUSYBOX, "true"]);
        assert_eq!(r.code, 125, "{name}: {}", r.stderr);
        assert_eq!(
            r.stderr,
            format!("hx: the guest reported an invalid status: {why}\n"),
            "{name}"
        );
    }
    // One byte that is not UTF-8 costs its own line, not the status before it.
    let init = hostile_init(
        work.path(),
        "utf8",
        r#"int s = port("hx.status");
        put(s, "{\"event\":\"started\",\"pid\":2,\"uptime_ms\":1}\n{\"event\":\"exited\",\"code\":3}\n\xff\xfe\n");"#,
    );
    let r = run_with_init(&hx, &init, &["run", "--rm", BUSYBOX, "true"]);
    assert_eq!((r.code, r.stderr.as_str()), (3, ""));
}

#[test]
fn floods_stay_within_the_caps_and_leave_no_relay() {
    let Some(hx) = Hx::with_busybox() else { return };
    std::fs::write(
        hx.root().join("config.toml"),
        "[log]\nmax_size = \"64k\"\nmax_file = 2\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    // 4 MB on stdout and stderr, 256 KiB on the console, 1 MB of junk status lines; the real
    // status comes last and must survive the flood.
    let init = hostile_init(
        work.path(),
        "flood",
        r#"int o = port("hx.stdout"), e = port("hx.stderr"), s = port("hx.status");
        flood(o, 4 << 20, 0); flood(e, 4 << 20, 0); flood(con, 256 << 10, 0);
        put(s, "{\"event\":\"started\",\"pid\":2,\"uptime_ms\":1}\n");
        flood(s, 1 << 20, 0);
        put(s, "\n{\"event\":\"exited\",\"code\":0}\n");"#,
    );
    let r = run_with_init(&hx, &init, &["run", "--name", "flood", BUSYBOX, "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = container_dir(&hx, "flood");
    for stream in ["output.log", "console.log", "status.log"] {
        assert_capped(&dir, stream, 64 << 10);
    }
    assert!(
        std::fs::metadata(dir.join("output.log.1")).unwrap().len() > 0,
        "the output never rotated"
    );
    // The newest output is kept: the flood's last line, on stderr (flooded after stdout).
    let last = format!("line {:010}\n", (4 << 20) / 16 - 1);
    let r = hx.ok(&["logs", "-n", "1", "flood"]);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", last.as_str()));
    assert_eq!(relays_for(hx.root()), 0, "a log relay outlived its VM");
    hx.ok(&["rm", "flood"]);
}

#[test]
fn followers_see_every_line_across_rotations() {
    let Some(hx) = Hx::with_busybox() else { return };
    std::fs::write(hx.root().join("config.toml"), "[log]\nmax_size = \"1m\"\n").unwrap();
    let work = tempfile::tempdir().unwrap();
    // 3 MB in 64 KiB writes, 30 ms apart: three rotations while hx run and hx logs -f follow.
    let init = hostile_init(
        work.path(),
        "paced",
        r#"int o = port("hx.stdout"), s = port("hx.status");
        put(s, "{\"event\":\"started\",\"pid\":2,\"uptime_ms\":1}\n");
        flood(o, 3 << 20, 30000);
        put(s, "{\"event\":\"exited\",\"code\":0}\n");"#,
    );
    let expected: String = (0..(3 << 20) / 16)
        .map(|i| format!("line {i:010}\n"))
        .collect();
    let r = run_with_init(&hx, &init, &["run", "--name", "att", BUSYBOX, "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout == expected,
        "attached hx run lost lines: {} of {} bytes",
        r.stdout.len(),
        expected.len()
    );

    let d = run_with_init(&hx, &init, &["run", "-d", "--name", "det", BUSYBOX, "true"]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let f = hx.run(&["logs", "-f", "det"]);
    assert_eq!(f.code, 0, "{}", f.stderr);
    assert!(
        f.stdout == expected,
        "hx logs -f lost lines: {} of {} bytes",
        f.stdout.len(),
        expected.len()
    );
    hx.ok(&["rm", "att", "det"]);
}

/// Max RSS in KiB of `hx args`, and its stdout.
// The child is reaped by wait4, which also reports its rusage.
#[allow(clippy::zombie_processes)]
fn max_rss(hx: &Hx, args: &[&str]) -> (u64, Vec<u8>) {
    use std::os::unix::process::ExitStatusExt;
    let mut c = hx.cmd(args);
    let child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id() as i32;
    let mut stdout = child.stdout.unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    assert_eq!(std::process::ExitStatus::from_raw(status).code(), Some(0));
    (usage.ru_maxrss as u64, reader.join().unwrap())
}

#[test]
fn logs_of_a_gigabyte_log_read_only_its_end() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&["run", "--name", "big", BUSYBOX, "echo", "hi"]);
    let dir = container_dir(&hx, "big");
    // A 1 GiB older file (sparse, which is no records at all: reading it would fail), then
    // the newest file with two records: `-n 1` reads the newest file alone.
    let f = std::fs::File::create(dir.join("output.log.1")).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    std::fs::write(
        dir.join("output.log"),
        "stdout 2026-12-03T22:40:01.000000000Z 15\nsecond to last\n\
         stdout 2026-12-03T22:40:02.000000000Z 14\nthe last line\n",
    )
    .unwrap();
    let (rss_kib, out) = max_rss(&hx, &["logs", "-n", "1", "big"]);
    assert_eq!(out, b"the last line\n");
    assert!(
        rss_kib < 64 * 1024,
        "hx logs -n 1 of a 1 GiB log used {rss_kib} KiB"
    );
    hx.ok(&["rm", "big"]);
}

/// An OCI layout of the busybox image with a hostile config: escape sequences in `created`
/// and in the CMD (which is also not a command in the image: pv-init's error quotes it).
fn hostile_image(dir: &Path) {
    let src = shared_image("glibc");
    let blob = |d: &str| {
        src.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    config["created"] = "\u{1b}]0;pwned\u{7}\u{1b}[2J".into();
    config["config"]["Cmd"] = serde_json::json!(["\u{1b}[31mred\u{9b}2J\u{202e}", "\n\u{1b}[1A"]);
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| {
        use sha2::Digest;
        let h = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(dir.join("blobs/sha256").join(&h), bytes).unwrap();
        format!("sha256:{h}")
    };
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        std::fs::copy(
            blob(d),
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap();
    }
    let c = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put(&c).into();
    manifest["config"]["size"] = c.len().into();
    let m = serde_json::to_vec(&manifest).unwrap();
    let mut index = index.clone();
    index["manifests"][0]["digest"] = put(&m).into();
    index["manifests"][0]["size"] = m.len().into();
    index["manifests"][0]["annotations"] = serde_json::json!({"io.containerd.image.name": "evil:latest", "org.opencontainers.image.ref.name": "latest"});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn image_metadata_is_escaped_in_listings_and_errors() {
    let Some(hx) = Hx::with_busybox() else { return };
    let layout = tempfile::tempdir().unwrap();
    hostile_image(layout.path());
    hx.ok(&["load", "-i", layout.path().to_str().unwrap()]);
    let images = hx.ok(&["images"]);
    assert_terminal_safe("hx images", &images.stdout);
    assert!(
        images.stdout.contains("\\x1b]0;pwned\\x07\\x1b[2J"),
        "{}",
        images.stdout
    );
    let json = hx.ok(&["images", "--json"]);
    assert_terminal_safe("hx images --json", &json.stdout);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["created"] == "\u{1b}]0;pwned\u{7}\u{1b}[2J"));
    let inspect = hx.ok(&["image", "inspect", "evil"]);
    assert_terminal_safe("hx image inspect", &inspect.stdout);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(
        v[0]["Config"]["config"]["Cmd"][0],
        "\u{1b}[31mred\u{9b}2J\u{202e}"
    );

    // The real pv-init cannot find the command and says so, quoting it.
    let r = hx.run(&["run", "--name", "evil", "evil"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert_terminal_safe("hx run's error", &r.stderr);
    assert!(
        r.stderr.contains("executable file not found"),
        "{}",
        r.stderr
    );
    let ps = hx.ok(&["ps", "-a"]);
    assert_terminal_safe("hx ps", &ps.stdout);
    // The command's newline does not start a fake row.
    assert_eq!(ps.stdout.lines().count(), 2, "{}", ps.stdout);
    assert!(
        ps.stdout
            .contains("\\x1b[31mred\\u009b2J\\u202e \\n\\x1b[1A"),
        "{}",
        ps.stdout
    );
    hx.ok(&["rm", "evil"]);
}

#[test]
fn the_outcome_reads_only_the_end_of_a_gigabyte_status_log() {
    let Some(hx) = Hx::with_busybox() else { return };
    let work = tempfile::tempdir().unwrap();
    // The guest stays up a while, then ends without a word of its own.
    let init = hostile_init(work.path(), "sleepy", "sleep(6);");
    let r = run_with_init(
        &hx,
        &init,
        &["run", "-d", "--name", "sleepy", BUSYBOX, "true"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = container_dir(&hx, "sleepy");
    let status = dir.join("status.log");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&status)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&status)
        .unwrap();
    std::io::Write::write_all(&mut f, b"\n{\"event\":\"exited\",\"code\":7}\n").unwrap();
    let (rss_kib, out) = max_rss(&hx, &["wait", "sleepy"]);
    assert_eq!(out, b"7\n");
    assert!(
        rss_kib < 64 * 1024,
        "hx wait read a 1 GiB status log with {rss_kib} KiB"
    );
    hx.ok(&["rm", "sleepy"]);
}

/// A container started beside a guest flooding every channel runs normally, and the flood stays
/// within its caps (the Xen lab cannot assert this: docs/xen-lab.md, "Known lab faults").
#[test]
fn a_neighbour_runs_normally_beside_a_flooding_guest() {
    let Some(hx) = Hx::with_busybox() else { return };
    std::fs::write(
        hx.root().join("config.toml"),
        "[log]\nmax_size = \"256k\"\nmax_file = 2\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let init = hostile_init(
        work.path(),
        "flood-for-a-while",
        r#"int o = port("hx.stdout"), e = port("hx.stderr"), s = port("hx.status");
        put(s, "{\"event\":\"started\",\"pid\":2,\"uptime_ms\":1}\n");
        time_t end = time(0) + 25;
        while (time(0) < end) {
            flood(o, 1 << 20, 0); flood(e, 256 << 10, 0); flood(con, 16 << 10, 0);
            put(s, "\x1b]0;junk\x07 not a status\n");
        }
        put(s, "{\"event\":\"exited\",\"code\":0}\n");"#,
    );
    let r = run_with_init(
        &hx,
        &init,
        &["run", "-d", "--name", "flood", BUSYBOX, "true"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::thread::sleep(Duration::from_secs(3));
    let started = std::time::Instant::now();
    let n = hx.run(&[
        "run",
        "--rm",
        "--name",
        "neighbour",
        BUSYBOX,
        "sh",
        "-c",
        "echo ok; ls /bin/busybox",
    ]);
    assert_eq!(
        (n.code, n.stdout.as_str()),
        (0, "ok\n/bin/busybox\n"),
        "{}",
        n.stderr
    );
    let state: serde_json::Value =
        serde_json::from_str(&hx.ok(&["inspect", "flood"]).stdout).unwrap();
    assert!(
        state[0]["State"]["Running"] == serde_json::Value::Bool(true),
        "the flood ended before the neighbour did ({:?}): the test proves nothing",
        started.elapsed()
    );
    assert_eq!(hx.ok(&["wait", "flood"]).stdout.trim(), "0");
    let dir = container_dir(&hx, "flood");
    for stream in ["output.log", "console.log", "status.log"] {
        assert_capped(&dir, stream, 256 << 10);
    }
    hx.ok(&["rm", "flood"]);
}
