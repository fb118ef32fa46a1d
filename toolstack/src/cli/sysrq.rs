//! `hx sysrq DOMAIN KEY`: send a magic SysRq key to a guest, as `xl sysrq`.
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain (name, id or hx container)
    pub domain: String,
    /// One SysRq key (e.g. h, s, b)
    pub key: String,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let key = match args.key.as_bytes() {
        [k] if k.is_ascii_graphic() => *k,
        _ => {
            return Err(super::Fixed::wrap(
                1,
                anyhow::anyhow!("Invalid sysrq {:?}: one printable character", args.key),
            ))
        }
    };
    let ctx = domain::open()?;
    let id = domain::resolve(&ctx, &args.domain)?;
    ctx.send_sysrq(id, key)?;
    Ok(0)
}
