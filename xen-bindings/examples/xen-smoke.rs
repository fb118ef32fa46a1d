//! Drives the bindings by hand in a dom0 (tests/xen-lab):
//!   cargo run -p xen-bindings --example xen-smoke -- list
//!   cargo run -p xen-bindings --example xen-smoke -- boot KERNEL [INITRD] [CMDLINE]
//!   cargo run -p xen-bindings --example xen-smoke -- destroy DOMID
//!   cargo run -p xen-bindings --example xen-smoke -- xs-read PATH
//! `boot` creates a PVH domain, unpauses it, prints its console pty and waits for it to die. RUST_LOG=libxl=debug shows libxl's log.
use xen_bindings::{Context, DomainConfig, Xenstore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or("missing argument (see the example's header)")
    };
    match arg(0)?.as_str() {
        "list" => {
            let ctx = Context::new()?;
            for d in ctx.list()? {
                println!(
                    "{:>5} {:<20} {} mem={}KiB vcpus={}/{} cpu={}ns {}",
                    d.domid,
                    d.name.unwrap_or_default(),
                    d.uuid,
                    d.memory_kb,
                    d.vcpus_online,
                    d.vcpus_max,
                    d.cpu_time_ns,
                    if d.pvh { "pvh" } else { "" }
                );
            }
        }
        "boot" => {
            let ctx = Context::new()?;
            let mut cfg = DomainConfig::pvh(format!("hx-smoke-{}", std::process::id()), arg(1)?)
                .memory_mb(128)
                .cmdline(
                    args.get(3)
                        .cloned()
                        .unwrap_or_else(|| "console=hvc0 hx.backend=xen".into()),
                );
            if let Some(initrd) = args.get(2) {
                cfg = cfg.ramdisk(initrd);
            }
            let domid = ctx.create(&cfg).await?;
            ctx.unpause(domid).await?;
            println!("domid {domid}, console {}", ctx.console_tty(domid)?);
            let mut events = ctx.watch_domain(domid)?;
            while let Some(e) = events.next().await {
                println!("{e:?}");
                if let xen_bindings::DomainEvent::Shutdown { .. } = e {
                    ctx.destroy(domid).await?;
                }
                if let xen_bindings::DomainEvent::Death { .. } = e {
                    break;
                }
            }
        }
        "destroy" => Context::new()?.destroy(arg(1)?.parse()?).await?,
        "xs-read" => {
            let xs = Xenstore::open()?;
            let path = arg(1)?;
            match xs.read(&path)? {
                Some(v) => println!("{}", String::from_utf8_lossy(&v)),
                None => println!("(no such node)"),
            }
        }
        other => return Err(format!("unknown command {other}").into()),
    }
    Ok(())
}
