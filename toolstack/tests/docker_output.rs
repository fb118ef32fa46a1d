//! docker's output contract, as a CI script parses it: `ps --filter/--format`, `inspect -f`,
//! `images --filter/--format`, labels on containers and volumes, exit codes and messages.
//! Containers are made with `hx create` (no VM boots) except where the guest must see something.
mod common;
use common::{shared_image, Hx, Registry, BUSYBOX};

/// A store with busybox and three created containers: web (app=shop, tier=front), db
/// (app=shop) and cache (from a label file), made in that order.
fn three_containers() -> Option<Hx> {
    let hx = Hx::with_busybox()?;
    hx.ok(&[
        "create",
        "--name",
        "web",
        "-l",
        "app=shop",
        "--label",
        "tier=front",
        BUSYBOX,
        "true",
    ]);
    hx.ok(&["create", "--name", "db", "-l", "app=shop", BUSYBOX, "true"]);
    let labels = hx.root().join("labels");
    std::fs::write(&labels, "# a comment\n  role=cache\napp=kv\nbare\n").unwrap();
    hx.ok(&[
        "create",
        "--name",
        "cache",
        "--label-file",
        labels.to_str().unwrap(),
        BUSYBOX,
        "true",
    ]);
    Some(hx)
}

/// The names ps prints, sorted (containers made in the same second have no order).
fn names(hx: &Hx, args: &[&str]) -> String {
    let mut all = vec!["ps", "--format", "{{.Names}}"];
    all.extend_from_slice(args);
    let out = hx.ok(&all).stdout;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn ps_filters_combine_like_dockers() {
    let Some(hx) = three_containers() else { return };
    assert_eq!(names(&hx, &["-a"]), "cache\ndb\nweb\n");
    // Running only by default; a status filter shows stopped ones, as docker's daemon does.
    assert_eq!(names(&hx, &[]), "");
    assert_eq!(
        names(&hx, &["--filter", "status=created"]),
        "cache\ndb\nweb\n"
    );
    assert_eq!(names(&hx, &["-f", "status=exited"]), "");
    // One key's values are alternatives; label values must all hold.
    assert_eq!(
        names(&hx, &["-a", "-f", "name=db", "-f", "name=web"]),
        "db\nweb\n"
    );
    assert_eq!(names(&hx, &["-a", "-f", "name=^we"]), "web\n");
    assert_eq!(names(&hx, &["-a", "-f", "label=app=shop"]), "db\nweb\n");
    assert_eq!(
        names(&hx, &["-a", "-f", "label=app=shop", "-f", "label=tier"]),
        "web\n"
    );
    assert_eq!(
        names(&hx, &["-a", "-f", "label=role=cache", "-f", "label=app"]),
        "cache\n"
    );
    assert_eq!(
        names(&hx, &["-a", "-f", "label=bare"]),
        "",
        "a bare key in a label file is dropped"
    );
    let id = hx.ok(&["inspect", "-f", "{{.Id}}", "web"]).stdout;
    assert_eq!(
        names(&hx, &["-a", "-f", &format!("id={}", &id[..10])]),
        "web\n"
    );
    assert_eq!(
        names(&hx, &["-a", "-f", &format!("ancestor={BUSYBOX}")]),
        "cache\ndb\nweb\n"
    );
    assert_eq!(names(&hx, &["-a", "-f", "ancestor=nginx:nothere"]), "");
    let q = hx.ok(&["ps", "-aq", "-f", "label=tier"]).stdout;
    assert_eq!(q, format!("{}\n", &id[..12]));
}

#[test]
fn ps_formats_templates_tables_and_json() {
    let Some(hx) = three_containers() else { return };
    let r = hx.ok(&[
        "ps",
        "-a",
        "-f",
        "name=web",
        "--format",
        "table {{.Names}}\\t{{.State}}\\t{{.Labels}}",
    ]);
    assert_eq!(
        r.stdout,
        "NAMES     STATE     LABELS\nweb       created   app=shop,tier=front\n"
    );
    // An empty table still has its header.
    let r = hx.ok(&["ps", "--format", "table {{.ID}}\t{{.Status}}"]);
    assert_eq!(r.stdout, "CONTAINER ID   STATUS\n");
    let r = hx.ok(&["ps", "-a", "--format", "json"]);
    let rows: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    let web = rows.iter().find(|r| r["Names"] == "web").expect("web");
    assert_eq!(web["Command"], "\"true\"");
    assert_eq!(web["Status"], "Created");
    assert_eq!(web["Image"], BUSYBOX);
    assert_eq!(web["Labels"], "app=shop,tier=front");
    // `{{json .}}` is the json format's row; RunningFor ("Less than a second ago") may tick
    // over between the two commands, so it is compared apart from the rest.
    let without_age = |out: &str| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| {
                let mut row: serde_json::Value = serde_json::from_str(l).unwrap();
                let age = row["RunningFor"].take();
                assert!(age.as_str().is_some_and(|a| a.ends_with(" ago")), "{age}");
                row
            })
            .collect()
    };
    assert_eq!(
        without_age(&hx.ok(&["ps", "-a", "--format", "{{json .}}"]).stdout),
        without_age(&r.stdout)
    );
    let r = hx.ok(&[
        "ps",
        "-a",
        "-f",
        "name=db",
        "--format",
        "{{.Names}}: {{upper .State}} {{len (split .Labels \",\")}}",
    ]);
    assert_eq!(r.stdout, "db: CREATED 1\n");
    // -q wins over a template, as in docker.
    let r = hx.ok(&["ps", "-aq", "--format", "{{.Names}}", "-f", "name=db"]);
    assert_eq!(r.stdout.trim().len(), 12, "{}", r.stdout);
}

/// Moves a container's creation time `hours` back, so that its CREATED cell ("3 hours ago")
/// holds still while the test runs.
fn backdate(hx: &Hx, name: &str, hours: i64) {
    let id = hx.ok(&["inspect", "-f", "{{.Id}}", name]).stdout;
    let path = hx
        .root()
        .join("containers")
        .join(id.trim())
        .join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let then = chrono::Utc::now() - chrono::Duration::hours(hours);
    state["created"] = then.format("%Y-%m-%dT%H:%M:%SZ").to_string().into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
}

/// hx's tables are docker's: for the same cells, the bytes `docker ps -a` and `docker images`
/// print (docker's tabwriter: each column its widest cell + 3, at least 10; the last column
/// unpadded, an empty cell padded; COMMAND cut at 20 columns with `…`). hx's one extra
/// column, BACKEND, is laid out by the same rule.
#[test]
fn default_tables_are_laid_out_as_dockers() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&["load", "-i", shared_image("musl").to_str().unwrap()]);
    hx.ok(&[
        "create",
        "--name",
        "web",
        BUSYBOX,
        "sleep",
        "100000000000000",
    ]);
    hx.ok(&[
        "create",
        "--name",
        "db-primary",
        "busybox:1.38.0-musl",
        "true",
    ]);
    backdate(&hx, "web", 3);
    backdate(&hx, "db-primary", 4);
    let id = |name: &str| hx.ok(&["inspect", "-f", "{{.Id}}", name]).stdout[..12].to_string();
    let anonymous = |table: String| {
        table
            .replace(&id("web"), "111111111111")
            .replace(&id("db-primary"), "222222222222")
    };
    assert_eq!(
        anonymous(hx.ok(&["ps", "-a"]).stdout),
        "CONTAINER ID   IMAGE                  COMMAND                  CREATED       STATUS    PORTS     BACKEND   NAMES\n\
         111111111111   busybox:1.38.0-glibc   \"sleep 1000000000000…\"   3 hours ago   Created             qemu      web\n\
         222222222222   busybox:1.38.0-musl    \"true\"                   4 hours ago   Created             qemu      db-primary\n"
    );
    // docker's own default template (`docker ps`'s columns, no BACKEND) gives docker's bytes.
    let docker_default = "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}";
    assert_eq!(
        anonymous(hx.ok(&["ps", "-a", "--format", docker_default]).stdout),
        "CONTAINER ID   IMAGE                  COMMAND                  CREATED       STATUS    PORTS     NAMES\n\
         111111111111   busybox:1.38.0-glibc   \"sleep 1000000000000…\"   3 hours ago   Created             web\n\
         222222222222   busybox:1.38.0-musl    \"true\"                   4 hours ago   Created             db-primary\n"
    );
    assert_eq!(
        hx.ok(&["images"]).stdout,
        "REPOSITORY   TAG            IMAGE ID       CREATED               SIZE\n\
         busybox      1.38.0-glibc   c6348fa86ba0   2026-05-13 02:21:49   2.23MB\n\
         busybox      1.38.0-musl    654fc8fd836e   2026-05-13 02:21:49   886.16kB\n"
    );
    // Columns narrower than docker's minimum are 10 wide.
    assert_eq!(
        hx.ok(&[
            "images",
            "--format",
            "table {{.Tag}}\\t{{.Size}}\\t{{.Repository}}"
        ])
        .stdout,
        "TAG            SIZE       REPOSITORY\n\
         1.38.0-glibc   2.23MB     busybox\n\
         1.38.0-musl    886.16kB   busybox\n"
    );
}

#[test]
fn ps_refusals_name_the_culprit() {
    let hx = Hx::new();
    let r = hx.run(&["ps", "-f", "status"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (125, "hx: invalid argument \"status\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\n")
    );
    let r = hx.run(&["ps", "-f", "colour=red"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "hx: invalid filter 'colour'\n")
    );
    let r = hx.run(&["ps", "-f", "status=sleepy"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("hx: invalid filter 'status=sleepy': invalid value for state (sleepy): must be one of created, running, paused"), "{}", r.stderr);
    let r = hx.run(&["ps", "--format", "{{.Names"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "hx: template parsing error: template: :1: unclosed action\n"
        )
    );
    let r = hx.run(&["ps", "--bogus"]);
    assert_eq!(r.code, 2, "other commands keep clap's usage code");
    let Some(hx) = three_containers() else { return };
    let r = hx.run(&["ps", "-a", "--format", "{{.Names}} {{.Nope}}"]);
    assert_eq!(
        (r.code, r.stderr.as_str(), r.stdout.as_str()),
        (1, "hx: template parsing error: template: :1:13: executing \"\" at <.Nope>: can't evaluate field Nope\n", "")
    );
}

#[test]
fn inspect_format_uses_dockers_field_names() {
    let Some(hx) = three_containers() else { return };
    let r = hx.ok(&["inspect", "-f", "{{.State.ExitCode}} {{.State.Status}} [{{.NetworkSettings.IPAddress}}] {{.Config.Labels.app}} {{index .Config.Labels \"none\"}}", "web", "db"]);
    assert_eq!(
        r.stdout,
        "0 created [] shop <no value>\n0 created [] shop <no value>\n"
    );
    let r = hx.ok(&["inspect", "--format", "{{json .Config.Labels}}", "web"]);
    assert_eq!(r.stdout, "{\"app\":\"shop\",\"tier\":\"front\"}\n");
    let r = hx.ok(&[
        "inspect",
        "--format",
        "{{.Name}} {{.Config.Image}} {{.Path}} {{json .Config.Cmd}}",
        "cache",
    ]);
    assert_eq!(r.stdout, format!("cache {BUSYBOX} true [\"true\"]\n"));
    let r = hx.ok(&["inspect", "--format", "json", "web", "db"]);
    assert!(r.stdout.starts_with("[{"), "{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 1, "compact: {}", r.stdout);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[1]["Name"], "db");
    // Every container that exists is printed, then the failures: exit 1.
    let r = hx.run(&["inspect", "-f", "{{.Name}}", "web", "ghost", "db"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (1, "web\ndb\n", "hx: no such container: ghost\n")
    );
    let r = hx.run(&["inspect", "-f", "{{.State.Nope}}", "web"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("can't evaluate field Nope"),
        "{}",
        r.stderr
    );
    // A template that does not parse: docker's 64, nothing looked up.
    let r = hx.run(&["inspect", "-f", "{{if}}", "ghost"]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("hx: template parsing error: template: :1: "),
        "{}",
        r.stderr
    );
}

#[test]
fn images_filter_and_format() {
    let hx = Hx::new();
    hx.load_busybox();
    hx.ok(&["load", "-i", shared_image("musl").to_str().unwrap()]);
    let r = hx.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut lines: Vec<&str> = r.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["busybox:1.38.0-glibc", "busybox:1.38.0-musl"]);
    let r = hx.ok(&[
        "images",
        "-f",
        "reference=*:*-glibc",
        "--format",
        "{{.Tag}}",
    ]);
    assert_eq!(r.stdout, "1.38.0-glibc\n");
    let r = hx.ok(&["images", "-f", "reference=busybox", "-q"]);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert_eq!(hx.ok(&["images", "-f", "reference=nginx", "-q"]).stdout, "");
    // `hx images REPOSITORY[:TAG]` is docker's reference filter.
    let r = hx.ok(&["images", "busybox:1.38.0-musl", "--format", "{{.Tag}}"]);
    assert_eq!(r.stdout, "1.38.0-musl\n");
    assert_eq!(
        hx.ok(&["images", "-q", "busybox"]).stdout.lines().count(),
        2
    );
    assert_eq!(hx.ok(&["images", "-f", "dangling=true", "-q"]).stdout, "");
    assert_eq!(hx.ok(&["images", "-f", "label=nope", "-q"]).stdout, "");
    let r = hx.ok(&[
        "images",
        "-f",
        "reference=*musl",
        "--format",
        "table {{.Repository}}\t{{.Tag}}",
    ]);
    assert_eq!(r.stdout, "REPOSITORY   TAG\nbusybox      1.38.0-musl\n");
    let r = hx.run(&["images", "-f", "dangling=maybe"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "hx: invalid filter 'dangling=maybe'\n")
    );
    // One digest everywhere: rmi's Deleted: is the id images shows.
    let short = hx
        .ok(&["images", "-f", "reference=*musl", "--format", "{{.ID}}"])
        .stdout;
    let full = hx
        .ok(&["images", "-f", "reference=*musl", "--no-trunc", "-q"])
        .stdout;
    assert_eq!(short.trim().len(), 12);
    assert!(
        full.starts_with(&format!("sha256:{}", short.trim())),
        "{full} {short}"
    );
    let r = hx.ok(&["rmi", "busybox:1.38.0-musl"]);
    assert_eq!(
        r.stdout,
        format!("Untagged: busybox:1.38.0-musl\nDeleted: {full}")
    );
}

#[test]
fn rmi_goes_on_after_a_failure_and_reports_each() {
    let hx = Hx::new();
    hx.load_busybox();
    hx.ok(&["load", "-i", shared_image("musl").to_str().unwrap()]);
    let r = hx.run(&["rmi", "ghost:1", "busybox:1.38.0-musl", "ghost:2"]);
    assert_eq!(r.code, 1, "several images: docker's 1");
    assert_eq!(
        r.stderr,
        "hx: image ghost:1 not found in the local store\nhx: image ghost:2 not found in the local store\n"
    );
    assert!(
        r.stdout
            .starts_with("Untagged: busybox:1.38.0-musl\nDeleted: sha256:"),
        "{}",
        r.stdout
    );
    assert_eq!(hx.ok(&["images", "-q"]).stdout.lines().count(), 1);
    // One image: its own code, as documented.
    assert_eq!(hx.run(&["rmi", "ghost:1"]).code, 11);
}

#[test]
fn run_and_create_usage_errors_exit_125() {
    let hx = Hx::new();
    for args in [
        &["run", "--bogus", BUSYBOX][..],
        &["create", "--bogus", BUSYBOX],
        &["run"],
        &["create", "--cpus", "x", BUSYBOX],
        &["--root", "/nonexistent/x", "run", "-Z", BUSYBOX],
        &["ru", "--bogus", BUSYBOX],
    ] {
        let r = hx.run(args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
    }
    let r = hx.run(&["run", "-l", "my label=1", BUSYBOX]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (125, "hx: label 'my label' contains whitespaces\n")
    );
    let bad = hx.root().join("labels");
    std::fs::write(&bad, "ok=1\nMY KEY=2\n").unwrap();
    let r = hx.run(&["create", "--label-file", bad.to_str().unwrap(), BUSYBOX]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            125,
            format!(
                "hx: invalid env file ({}): variable 'MY KEY' contains whitespaces\n",
                bad.display()
            )
            .as_str()
        )
    );
    assert!(!hx.root().join("containers").exists() || hx.ok(&["ps", "-aq"]).stdout.is_empty());
}

#[test]
fn env_file_lines_docker_rejects_are_refused() {
    let Some(hx) = Hx::with_busybox() else { return };
    let env = hx.root().join("env");
    std::fs::write(&env, "A=1\n  B= spaced \nMY VAR=1\n").unwrap();
    let r = hx.run(&["create", "--env-file", env.to_str().unwrap(), BUSYBOX]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            125,
            format!(
                "hx: invalid env file ({}): variable 'MY VAR' contains whitespaces\n",
                env.display()
            )
            .as_str()
        )
    );
    assert_eq!(
        hx.ok(&["ps", "-aq"]).stdout,
        "",
        "a refused create leaves nothing"
    );
}

/// `-e KEY` copies hx's own value, and leaves the variable out when hx has none; an env file's
/// bare KEY does the same; leading whitespace goes, trailing stays (docker's kvfile).
#[test]
fn bare_env_keys_take_the_hosts_value_or_nothing() {
    let Some(hx) = Hx::with_busybox() else { return };
    let env = hx.root().join("env");
    std::fs::write(
        &env,
        "\u{feff}FROM_FILE=x \n  HX_TEST_SET_IN_FILE\nHX_TEST_UNSET_IN_FILE\n",
    )
    .unwrap();
    let r = common::run_with_timeout(
        {
            let mut c = hx.cmd(&[
                "run",
                "--rm",
                "--env-file",
                env.to_str().unwrap(),
                "-e",
                "HX_TEST_SET",
                "-e",
                "HX_TEST_UNSET",
                BUSYBOX,
                "sh",
                "-c",
                "env | grep -E '^(HX_TEST|FROM_FILE)' | sort | sed 's/$/|/'",
            ]);
            c.env("HX_TEST_SET", "from host")
                .env("HX_TEST_SET_IN_FILE", "also")
                .env_remove("HX_TEST_UNSET")
                .env_remove("HX_TEST_UNSET_IN_FILE");
            c
        },
        std::time::Duration::from_secs(180),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "FROM_FILE=x |\nHX_TEST_SET=from host|\nHX_TEST_SET_IN_FILE=also|\n"
    );
}

#[test]
fn volume_labels_are_shown_and_filterable() {
    let hx = Hx::new();
    hx.ok(&[
        "volume", "create", "--label", "env=prod", "--label", "team", "--size", "16m", "v1",
    ]);
    hx.ok(&["volume", "create", "--size", "16m", "v2"]);
    assert_eq!(
        hx.ok(&["volume", "ls", "-q", "-f", "label=env=prod"])
            .stdout,
        "v1\n"
    );
    assert_eq!(
        hx.ok(&["volume", "ls", "-q", "-f", "label=team", "-f", "label=env"])
            .stdout,
        "v1\n"
    );
    assert_eq!(
        hx.ok(&["volume", "ls", "-q", "-f", "label=env=dev"]).stdout,
        ""
    );
    assert_eq!(
        hx.ok(&["volume", "ls", "-q", "-f", "name=2$"]).stdout,
        "v2\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&hx.ok(&["volume", "inspect", "v1"]).stdout).unwrap();
    assert_eq!(
        v[0]["Labels"],
        serde_json::json!({"env": "prod", "team": ""})
    );
    let r = hx.run(&["volume", "create", "--label", "=x", "v3"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (125, "hx: invalid label '=x': empty name\n")
    );
}

#[test]
fn stop_timeout_init_and_pull_policies() {
    let Some(hx) = Hx::with_busybox() else { return };
    hx.ok(&[
        "create",
        "--name",
        "st",
        "--stop-timeout",
        "1",
        "--init",
        BUSYBOX,
        "true",
    ]);
    assert_eq!(
        hx.ok(&["inspect", "-f", "{{.Config.StopTimeout}}", "st"])
            .stdout,
        "1\n"
    );
    let r = hx.run(&["create", "--pull", "never", "busybox:not-here"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            125,
            "hx: image busybox:not-here not found in the local store\n"
        )
    );
    let r = hx.run(&["create", "--pull", "sometimes", BUSYBOX]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    let r = hx.run(&["create", "--stop-timeout", "-1", BUSYBOX]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    // The workload ignores SIGTERM: hx stop waits the container's 1 s, not docker's default 10.
    hx.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--stop-timeout",
        "1",
        BUSYBOX,
        "sh",
        "-c",
        "trap '' TERM; echo up; sleep 600",
    ]);
    // The trap is set once "up" is printed: a TERM before it would end the shell at once.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !hx.ok(&["logs", "stubborn"]).stdout.contains("up") {
        assert!(
            std::time::Instant::now() < until,
            "the workload never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // `logs -f --until` a moment ahead ends at that moment, though the container runs on.
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 2
    );
    let r = common::run_with_timeout(
        hx.cmd(&["logs", "-f", "--until", &until, "stubborn"]),
        std::time::Duration::from_secs(30),
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "up\n"), "{}", r.stderr);
    let t = std::time::Instant::now();
    hx.ok(&["stop", "stubborn"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        hx.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"])
            .stdout,
        "137\n"
    );
    hx.ok(&["rm", "-f", "stubborn"]);
}

/// `--read-only`: writes to the root fail with EROFS inside; volumes, `--tmpfs`, /dev/shm and
/// hx's /etc files are there; no writable layer is made on the host.
#[test]
fn read_only_root() {
    let Some(hx) = Hx::with_busybox() else { return };
    let script = "touch /x; echo rc=$?; touch /scratch/y && echo tmpfs-ok; \
                  touch /dev/shm/z && echo shm-ok; grep -c ro-test /etc/hostname";
    let r = hx.run(&[
        "run",
        "--name",
        "ro",
        "--hostname",
        "ro-test",
        "--read-only",
        "--tmpfs",
        "/scratch",
        BUSYBOX,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "rc=1\ntmpfs-ok\nshm-ok\n1\n");
    assert_eq!(r.stderr, "touch: /x: Read-only file system\n");
    assert_eq!(
        hx.ok(&["inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", "ro"])
            .stdout,
        "true\n"
    );
    let id = hx.ok(&["inspect", "-f", "{{.Id}}", "ro"]).stdout;
    assert!(!hx
        .root()
        .join("containers")
        .join(id.trim())
        .join("upper.img")
        .exists());
    let r = hx.run(&["create", "--read-only", "--disk-size", "1g", BUSYBOX]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            125,
            "hx: conflicting options: --read-only and --disk-size\n"
        )
    );
}

/// `--pull always` asks the registry even when the store has the image; `missing` does not.
#[test]
fn pull_always_asks_the_registry() {
    let hx = Hx::new();
    if !hx.has_guest() {
        return;
    }
    let reg = Registry::start();
    reg.push_layout(&shared_image("glibc"), "library/busybox:1.38.0", None);
    let image = format!("{}/library/busybox:1.38.0", reg.host());
    let r = hx.run(&["create", "--pull", "never", &image, "true"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    let r = hx.ok(&["create", "--pull", "always", &image, "true"]);
    assert!(
        r.stderr.contains("Status: Downloaded newer image"),
        "{}",
        r.stderr
    );
    let r = hx.ok(&["create", "--pull", "always", &image, "true"]);
    assert!(r.stderr.contains("Image is up to date"), "{}", r.stderr);
    let r = hx.ok(&["create", &image, "true"]);
    assert!(
        !r.stderr.contains("Image is up to date"),
        "missing: no registry: {}",
        r.stderr
    );
    // pull prints the reference asked for.
    assert_eq!(hx.ok(&["pull", "-q", &image]).stdout, format!("{image}\n"));
}

/// `hx logs` with stdout and stderr into one pipe, as `2>&1` in a script.
fn logs_merged(hx: &Hx, args: &[&str]) -> String {
    let f = tempfile::tempfile().unwrap();
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let mut c = hx.cmd(&all);
    c.stdout(f.try_clone().unwrap())
        .stderr(f.try_clone().unwrap());
    let child = c.spawn().unwrap();
    let r = common::wait_with_timeout(child, std::time::Duration::from_secs(60));
    assert_eq!(r.code, 0, "{all:?}");
    let mut f = f;
    use std::io::{Read, Seek};
    f.rewind().unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

/// stdout and stderr in arrival order, `-t`'s times, `--since`/`--until` in docker's forms,
/// `--tail` across both streams; on a terminal the guest's escape sequences are shown, not
/// obeyed. One VM boot.
#[test]
fn logs_interleave_streams_with_times_since_and_until() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&[
        "run",
        "--name",
        "ts",
        BUSYBOX,
        "sh",
        "-c",
        // A second between lines: stdout and stderr are two channels, whose order is kept only
        // between writes the relay sees apart (docker's too); lines written back to back on
        // one stream can arrive in one read, with one time, and `--since T_C --until T_C`
        // would rightly show both.
        "echo a; sleep 1; echo b >&2; sleep 1; echo c; sleep 1; printf '\\033]0;pwned\\007d\\n'",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "a\nc\n\u{1b}]0;pwned\u{7}d\n", "b\n")
    );
    assert_eq!(logs_merged(&hx, &["ts"]), "a\nb\nc\n\u{1b}]0;pwned\u{7}d\n");
    let r = hx.ok(&["logs", "ts"]);
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str()),
        ("a\nc\n\u{1b}]0;pwned\u{7}d\n", "b\n")
    );
    assert_eq!(
        logs_merged(&hx, &["--tail", "3", "ts"]),
        "b\nc\n\u{1b}]0;pwned\u{7}d\n"
    );
    assert_eq!(
        logs_merged(&hx, &["-f", "-n", "1", "ts"]),
        "\u{1b}]0;pwned\u{7}d\n"
    );

    // -t: "<RFC 3339 UTC, 9 digits> <line>", each line's time after the last's.
    let stamped = logs_merged(&hx, &["-t", "ts"]);
    let lines: Vec<(&str, &str)> = stamped
        .lines()
        .map(|l| l.split_once(' ').expect(l))
        .collect();
    assert_eq!(
        lines.iter().map(|l| l.1).collect::<Vec<_>>(),
        ["a", "b", "c", "\u{1b}]0;pwned\u{7}d"],
        "{stamped}"
    );
    let nanos: Vec<i64> = lines
        .iter()
        .map(|(t, _)| {
            assert_eq!(t.len(), 30, "{t}");
            assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap()
        })
        .collect();
    assert!(nanos.windows(2).all(|w| w[0] < w[1]), "{stamped}");
    let (t_b, t_c) = (lines[1].0, lines[2].0);
    assert_eq!(
        logs_merged(&hx, &["--since", t_c, "ts"]),
        "c\n\u{1b}]0;pwned\u{7}d\n"
    );
    assert_eq!(logs_merged(&hx, &["--until", t_b, "ts"]), "a\nb\n");
    // Unix seconds, and a duration before now.
    let unix = format!(
        "{}.{:09}",
        nanos[2] / 1_000_000_000,
        nanos[2] % 1_000_000_000
    );
    assert_eq!(
        logs_merged(&hx, &["-t", "--since", &unix, "--until", &unix, "ts"]),
        format!("{t_c} c\n")
    );
    assert_eq!(
        logs_merged(&hx, &["--since", "10m", "-n", "1", "ts"]),
        "\u{1b}]0;pwned\u{7}d\n"
    );
    assert_eq!(
        logs_merged(&hx, &["--until=-1m", "ts"]),
        "a\nb\nc\n\u{1b}]0;pwned\u{7}d\n"
    );
    assert_eq!(logs_merged(&hx, &["--until", "10m", "ts"]), "");
    let r = hx.run(&["logs", "--since", "yesterday", "ts"]);
    assert_eq!(
        (r.code, r.stderr.as_str(), r.stdout.as_str()),
        (1, "hx: invalid value for \"since\": failed to parse value as time or duration: \"yesterday\"\n", "")
    );
    // On a terminal: the escape sequence shown escaped.
    let t = common::term::Terminal::spawn(&hx, &["logs", "-n", "1", "ts"], 24, 80);
    let r = t.wait();
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, "\\x1b]0;pwned\\x07d\r\n");
}

/// `hx save` writes docker's archive: skopeo reads it, `hx load` reads it back from a file,
/// from `< file` and from a pipe with the same image id; a cut archive or a killed load leaves
/// the store as it was. No VM.
#[test]
fn save_and_load_through_stdin() {
    let hx = Hx::new();
    hx.load_busybox();
    let id = hx.ok(&["images", "--no-trunc", "-q"]).stdout;
    let tar = hx.root().join("bb.tar");
    let tar_s = tar.to_str().unwrap();
    let r = hx.ok(&["save", BUSYBOX, "-o", tar_s]);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    let list = std::process::Command::new("tar")
        .args(["tf", tar_s])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.ends_with("manifest.json\nrepositories\n"), "{list}");
    assert!(
        list.contains(&format!("blobs/sha256/{}\n", &id.trim()[7..])),
        "{list}"
    );
    let manifest = std::process::Command::new("tar")
        .args(["xOf", tar_s, "manifest.json"])
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(m[0]["RepoTags"], serde_json::json!([BUSYBOX]));
    assert_eq!(m[0]["Config"], format!("blobs/sha256/{}", &id.trim()[7..]));
    // skopeo (containers/image) reads it as docker's archive, verifying every layer.
    let oci = hx.root().join("skopeo-oci");
    let s = std::process::Command::new("skopeo")
        .arg("copy")
        .arg("-q")
        .arg(format!("docker-archive:{tar_s}"))
        .arg(format!("oci:{}:x", oci.display()))
        .output()
        .expect("skopeo (tests/run-all.sh installs it)");
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));

    // Back in from stdin: `< file` (a file) and `-i -` from a pipe.
    let fresh = Hx::new();
    let load = |args: &[&str], stdin: std::process::Stdio| {
        let mut c = fresh.cmd(args);
        c.stdin(stdin)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        common::wait_with_timeout(c.spawn().unwrap(), std::time::Duration::from_secs(120))
    };
    let r = load(&["load"], std::fs::File::open(&tar).unwrap().into());
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, format!("Loaded image: {BUSYBOX}\n").as_str()),
        "{}",
        r.stderr
    );
    assert_eq!(fresh.ok(&["images", "--no-trunc", "-q"]).stdout, id);
    fresh.ok(&["rmi", BUSYBOX]);
    let mut cat = std::process::Command::new("cat")
        .arg(&tar)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let r = load(
        &["load", "-q", "-i", "-"],
        cat.stdout.take().unwrap().into(),
    );
    cat.wait().unwrap();
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, id.as_str()),
        "{}",
        r.stderr
    );
    fresh.ok(&["rmi", BUSYBOX]);
    fresh.ok(&["image", "prune", "-a"]);
    let before = fresh.store_files();
    assert_eq!(before, ["index.json"]);

    // A cut archive: one line, its own code, nothing kept.
    let cut = hx.root().join("cut.tar");
    let bytes = std::fs::read(&tar).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = load(&["load"], std::fs::File::open(&cut).unwrap().into());
    assert_eq!(r.code, 23, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("hx: <stdin>: invalid image archive: member \"blobs/sha256/")
            && r.stderr
                .ends_with("truncated archive: member shorter than its header says\n")
            && r.stderr.lines().count() == 1,
        "{}",
        r.stderr
    );
    assert_eq!(fresh.store_files(), before);

    // Killed halfway through the archive: no image, and the scratch it leaves is prune's.
    let mut c = fresh.cmd(&["load"]);
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &bytes[..bytes.len() / 2]).unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let in_tmp = || {
        fresh
            .store_files()
            .iter()
            .any(|f| f.starts_with("tmp/load-") && f.contains("/archive/blobs/"))
    };
    while !in_tmp() {
        assert!(std::time::Instant::now() < until, "hx load never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(fresh.ok(&["images", "-q"]).stdout, "");
    fresh.ok(&["image", "prune"]);
    assert_eq!(fresh.store_files(), before);

    // docker's refusals.
    let r = fresh.run(&["save", "ghost:1", "-o", tar_s]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (11, "hx: image ghost:1 not found in the local store\n")
    );
    let t = common::term::Terminal::spawn(&hx, &["save", BUSYBOX], 24, 80);
    let r = t.wait();
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            1,
            "hx: cowardly refusing to save to a terminal. Use the -o flag or redirect\r\n"
        )
    );
    let t = common::term::Terminal::spawn(&fresh, &["load"], 24, 80);
    let r = t.wait();
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (1, "hx: requested load from stdin, but stdin is empty\r\n")
    );
    // A progress bar on a terminal while an archive of unknown size streams in.
    let script = format!(
        "cat {tar_s} | {} --root {} load",
        env!("CARGO_BIN_EXE_hx"),
        fresh.root().display()
    );
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", &script]);
    let mut t = common::term::Terminal::spawn_cmd(sh, 24, 80);
    t.expect("Loading");
    let r = t.wait();
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("Loaded image: {BUSYBOX}")),
        "{}",
        r.stdout
    );
}

/// docker's `{{.Label "key"}}` method in `ps --format`; `inspect` of a container that was
/// created and never started shows its Config (env files and host variables as at create).
#[test]
fn ps_label_method_and_inspect_of_a_created_container() {
    let Some(hx) = three_containers() else { return };
    let out = hx
        .ok(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Label \"app\"}} [{{.Label \"tier\"}}]",
        ])
        .stdout;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["cache kv []", "db shop []", "web shop [front]"]);
    let r = hx.ok(&[
        "ps",
        "-a",
        "-f",
        "name=web",
        "--format",
        "table {{.Names}}\t{{upper (.Label \"tier\")}}\t{{\".Label \\\"x\\\"\"}}",
    ]);
    assert_eq!(
        r.stdout,
        "NAMES     LABEL     .Label \"x\"\nweb       FRONT     .Label \"x\"\n"
    );
    let json = hx.ok(&["ps", "-a", "--format", "json"]).stdout;
    assert!(
        !json.contains("\\u0001") && !json.contains("\"tier\""),
        "{json}"
    );

    let env = hx.root().join("env");
    std::fs::write(&env, "FROM_FILE=1\n").unwrap();
    let mut c = hx.cmd(&[
        "create",
        "--name",
        "cfg",
        "-u",
        "nobody",
        "--env-file",
        env.to_str().unwrap(),
        "-e",
        "A=1",
        "-e",
        "HX_TEST_HOST",
        BUSYBOX,
        "echo",
        "hi",
    ]);
    c.env("HX_TEST_HOST", "from host");
    let r = common::run_with_timeout(c, std::time::Duration::from_secs(60));
    assert_eq!(r.code, 0, "{}", r.stderr);
    std::fs::write(&env, "FROM_FILE=changed\n").unwrap();
    let r = hx.ok(&[
        "inspect",
        "-f",
        "{{json .Config.Env}} {{.Config.User}} {{json .Config.Cmd}} {{.State.Status}}",
        "cfg",
    ]);
    assert_eq!(
        r.stdout,
        "[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\"FROM_FILE=1\",\"A=1\",\"HX_TEST_HOST=from host\"] nobody [\"echo\",\"hi\"] created\n"
    );
}

/// The documented `-m` minimum boots; below it: 125 and one line.
#[test]
fn memory_minimum_boots() {
    let Some(hx) = Hx::with_busybox() else { return };
    let r = hx.run(&["run", "--rm", "-m", "39m", BUSYBOX, "true"]);
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (125, "hx: --memory \"39m\": out of range (40m to 1t)\n")
    );
    let r = hx.run(&[
        "run",
        "--rm",
        "-m",
        "40m",
        BUSYBOX,
        "sh",
        "-c",
        "echo hi; grep -c . /proc/meminfo >/dev/null",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "hi\n", "")
    );
}

/// ps's `before=`/`since=` (creation order, finer than a second) and `volume=` (a volume's
/// name or a mount's target).
#[test]
fn ps_filters_before_since_and_volume() {
    let Some(hx) = three_containers() else { return };
    hx.ok(&["volume", "create", "--size", "16m", "data"]);
    hx.ok(&[
        "create",
        "--name",
        "vol",
        "-v",
        "data:/srv",
        BUSYBOX,
        "true",
    ]);
    assert_eq!(names(&hx, &["-a", "-f", "before=db"]), "web\n");
    assert_eq!(names(&hx, &["-a", "-f", "since=db"]), "cache\nvol\n");
    assert_eq!(
        names(&hx, &["-a", "-f", "since=web", "-f", "before=vol"]),
        "cache\ndb\n"
    );
    assert_eq!(names(&hx, &["-a", "-f", "volume=data"]), "vol\n");
    assert_eq!(names(&hx, &["-a", "-f", "volume=/srv"]), "vol\n");
    assert_eq!(names(&hx, &["-a", "-f", "volume=other"]), "");
    let r = hx.run(&["ps", "-a", "-f", "before=ghost"]);
    assert_eq!(
        (r.code, r.stderr.as_str(), r.stdout.as_str()),
        (1, "hx: no such container: ghost\n", "")
    );
}

/// `hx completion bash` registers hx with bash, which then asks hx at each TAB: container,
/// image and volume names of the store (HX_ROOT) as it is then; internal commands are not
/// offered. Through a real bash, as a user's shell runs it. No VM.
#[test]
fn shell_completion_offers_the_stores_names() {
    let hx = Hx::new();
    hx.load_busybox();
    hx.ok(&["tag", BUSYBOX, "web/app:1"]);
    hx.ok(&["create", "--name", "web1", "web/app:1", "true"]);
    hx.ok(&["create", "--name", "db1", "web/app:1", "true"]);
    hx.ok(&["volume", "create", "data1"]);
    let script = hx.ok(&["completion", "bash"]).stdout;
    let complete = |words: &[&str]| {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let line = format!(
            "{script}\nCOMP_WORDS=({}); COMP_CWORD={}; COMP_TYPE=9\n_clap_complete_hx hx '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
            quoted.join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = std::process::Command::new("bash")
            .args(["--norc", "-c", &line])
            .env("HX_ROOT", hx.root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(complete(&["hx", "stop", "w"]), "web1\n");
    assert_eq!(
        complete(&["hx", "logs", ""])
            .lines()
            .take(2)
            .collect::<Vec<_>>(),
        ["db1", "web1"]
    );
    assert!(complete(&["hx", "rmi", ""]).starts_with("busybox:1.38.0-glibc\nweb/app:1\n"));
    assert_eq!(complete(&["hx", "volume", "rm", "d"]), "data1\n");
    let commands = complete(&["hx", ""]);
    assert!(
        commands.contains("\nps\n") && commands.contains("\npush\n"),
        "{commands}"
    );
    assert!(
        !commands.contains("__"),
        "internal commands offered: {commands}"
    );
}
