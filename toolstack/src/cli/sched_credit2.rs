//! `hx sched-credit2 [-d DOMAIN [-w WEIGHT] [-c CAP]]`: credit2 weights and caps, as
//! `xl sched-credit2`: without -d, every credit2 pool and its domains; with -d alone, that
//! domain; with -w/-c, set them.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain (name, id or hx container)
    #[arg(short, long)]
    pub domain: Option<String>,
    /// Weight (1..65535; default 256)
    #[arg(short, long, value_parser = clap::value_parser!(i32).range(1..=65535))]
    pub weight: Option<i32>,
    /// Cap, in percent of one CPU (0: none)
    #[arg(short, long, value_parser = clap::value_parser!(i32).range(0..=100_000))]
    pub cap: Option<i32>,
}

pub const HEADER: &str = "Name                                ID Weight  Cap\n";

pub fn row(name: &str, domid: u32, weight: i32, cap: i32) -> String {
    format!("{name:<33} {domid:>4} {weight:>6} {cap:>4}\n")
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let Some(dom) = &args.domain else {
        if args.weight.is_some() || args.cap.is_some() {
            return Err(super::Fixed::wrap(
                1,
                anyhow::anyhow!("Must specify a domain."),
            ));
        }
        let doms = ctx.list()?;
        let mut out = String::new();
        for p in ctx.cpupools()?.iter().filter(|p| p.scheduler == "credit2") {
            match ctx.credit2_ratelimit_us(p.poolid) {
                Ok(r) => out.push_str(&format!("Cpupool {}: ratelimit={r}us\n", p.name)),
                Err(_) => {
                    out.push_str(&format!("Cpupool {}: [sched params unavailable]\n", p.name))
                }
            }
            out.push_str(HEADER);
            for d in doms.iter().filter(|d| d.cpupool == p.poolid) {
                let c = ctx.credit2(d.domid)?;
                out.push_str(&row(
                    d.name.as_deref().unwrap_or("(null)"),
                    d.domid,
                    c.weight,
                    c.cap,
                ));
            }
        }
        domain::print(&out)?;
        return Ok(0);
    };
    let id = domain::resolve(&ctx, dom)?;
    if args.weight.is_none() && args.cap.is_none() {
        let c = ctx.credit2(id)?;
        let name = ctx.info(id)?.name;
        domain::print(&format!(
            "{HEADER}{}",
            row(name.as_deref().unwrap_or("(null)"), id, c.weight, c.cap)
        ))?;
        return Ok(0);
    }
    ctx.set_credit2(id, args.weight, args.cap)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_up_with_xl() {
        assert_eq!(
            HEADER,
            format!("{:<33} {:>4} {:>6} {:>4}\n", "Name", "ID", "Weight", "Cap")
        );
        assert_eq!(
            row("web", 5, 512, 50),
            format!("{:<33}    5    512   50\n", "web")
        );
    }
}
