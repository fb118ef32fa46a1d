//! Needs a Xen dom0 (tests/xen-lab): `cargo test -p xen-bindings --test dom0 -- --ignored`.
//! Each test skips itself, loudly, when /proc/xen/capabilities does not say control_d.
//! `boots_and_destroys_a_pvh_domain` also needs HX_XEN_KERNEL (a PVH-capable vmlinux) and,
//! optionally, HX_XEN_INITRD.
use xen_bindings::{Context, DomainConfig, DomainEvent, Perm, XenError, Xenstore};

fn in_dom0() -> bool {
    let yes = xen_bindings::is_dom0();
    if !yes {
        eprintln!("skipped: not a Xen dom0");
    }
    yes
}

#[test]
#[ignore = "needs a Xen dom0 (tests/xen-lab)"]
fn lists_dom0() {
    if !in_dom0() {
        return;
    }
    let ctx = Context::new().unwrap();
    let list = ctx.list().unwrap();
    assert_eq!(list[0].domid, 0);
    assert_eq!(list[0].name.as_deref(), Some("Domain-0"));
    assert_eq!(ctx.domid_by_name("Domain-0").unwrap(), 0);
    assert!(ctx.info(0).unwrap().vcpus_online >= 1);
    let e = ctx.info(32000).unwrap_err();
    assert_eq!(
        e.libxl_code(),
        Some(libxl_sys::ERROR_DOMAIN_NOTFOUND),
        "{e}"
    );
}

#[test]
#[ignore = "needs a Xen dom0 (tests/xen-lab)"]
fn xenstore_round_trip_in_dom0() {
    if !in_dom0() {
        return;
    }
    let xs = Xenstore::open().unwrap();
    assert_eq!(
        xs.read("/local/domain/0/name").unwrap().as_deref(),
        Some(&b"Domain-0"[..])
    );
    let base = format!("/local/domain/0/hx-test-{}", std::process::id());
    xs.transaction(|t| {
        t.write(&format!("{base}/a"), b"1")?;
        t.set_perms(&format!("{base}/a"), &[Perm::none(0), Perm::read(1)])
    })
    .unwrap();
    assert_eq!(
        xs.get_perms(&format!("{base}/a")).unwrap(),
        [Perm::none(0), Perm::read(1)]
    );
    xs.watch(&base, "t").unwrap();
    assert_eq!(xs.next_watch(None).unwrap().unwrap().path, base);
    xs.rm(&base).unwrap();
    assert_eq!(xs.read(&format!("{base}/a")).unwrap(), None);
}

#[tokio::test]
#[ignore = "needs a Xen dom0 (tests/xen-lab) and HX_XEN_KERNEL"]
async fn boots_and_destroys_a_pvh_domain() {
    if !in_dom0() {
        return;
    }
    let kernel = std::env::var("HX_XEN_KERNEL").expect("HX_XEN_KERNEL: a PVH-capable vmlinux");
    let mut cfg = DomainConfig::pvh(format!("hx-test-{}", std::process::id()), kernel)
        .memory_mb(128)
        .cmdline("console=hvc0 hx.backend=xen")
        .xenstore_node("hx/id", "test");
    if let Ok(initrd) = std::env::var("HX_XEN_INITRD") {
        cfg = cfg.ramdisk(initrd);
    }
    let ctx = Context::new().unwrap();
    let domid = ctx.create(&cfg).await.unwrap();
    // Created paused, with the nodes of the config written in the same transaction.
    assert!(ctx.info(domid).unwrap().paused);
    let xs = Xenstore::open().unwrap();
    assert_eq!(
        xs.read(&format!("/local/domain/{domid}/hx/id"))
            .unwrap()
            .as_deref(),
        Some(&b"test"[..])
    );
    ctx.unpause(domid).await.unwrap();
    assert_eq!(ctx.domid_by_name(&cfg.name).unwrap(), domid);
    assert!(ctx.console_tty(domid).unwrap().starts_with("/dev/pts/"));
    ctx.pause(domid).await.unwrap();
    assert!(ctx.info(domid).unwrap().paused);
    ctx.unpause(domid).await.unwrap();
    ctx.set_memory_target_kb(domid, 96 * 1024).unwrap();
    let mut events = ctx.watch_domain(domid).unwrap();
    ctx.destroy(domid).await.unwrap();
    assert_eq!(events.next().await, Some(DomainEvent::Death { domid }));
    assert!(matches!(ctx.info(domid), Err(XenError::Libxl { .. })));
}
