//! `hx cpupool-list [-c] [POOL]`: the CPU pools, as `xl cpupool-list`.
use super::domain;
use xen_bindings::CpupoolInfo;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// List each pool's CPUs instead of counts
    #[arg(short, long)]
    pub cpus: bool,
    /// Only this pool
    pub pool: Option<String>,
}

pub fn header(cpus: bool) -> String {
    format!(
        "{:<19}{}",
        "Name",
        if cpus {
            "CPU list\n"
        } else {
            "CPUs   Sched     Active   Domain count\n"
        }
    )
}

pub fn row(p: &CpupoolInfo, cpus: bool) -> String {
    let tail = if cpus {
        p.cpus
            .0
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    } else {
        format!(
            "{:>3} {:>9}       y       {:>4}",
            p.cpus.0.len(),
            p.scheduler,
            p.domains
        )
    };
    format!("{:<19}{tail}\n", p.name)
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let pools = ctx.cpupools()?;
    if let Some(name) = &args.pool {
        if !pools.iter().any(|p| &p.name == name) {
            return Err(super::Fixed::wrap(
                1,
                anyhow::anyhow!("Pool '{name}' does not exist"),
            ));
        }
    }
    let mut out = header(args.cpus);
    for p in pools
        .iter()
        .filter(|p| args.pool.as_ref().is_none_or(|n| &p.name == n))
    {
        out.push_str(&row(p, args.cpus));
    }
    domain::print(&out)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_bindings::CpuSet;

    #[test]
    fn prints_like_xl() {
        let p = CpupoolInfo {
            poolid: 0,
            name: "Pool-0".into(),
            scheduler: "credit2".into(),
            domains: 3,
            cpus: CpuSet([0, 1].into()),
        };
        assert_eq!(
            header(false) + &row(&p, false),
            "Name               CPUs   Sched     Active   Domain count\n\
             Pool-0               2   credit2       y          3\n"
        );
        assert_eq!(row(&p, true), format!("{:<19}0,1\n", "Pool-0"));
    }
}
