//! `hx destroy DOMAIN...`: end domains at once, as `xl destroy` (an hx container's monitor then
//! records it as ended without a status).
use super::domain;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domains (name or id)
    #[arg(required = true)]
    pub domains: Vec<String>,
}

pub async fn run(_g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let ctx = domain::open()?;
    let mut code = 0;
    for d in &args.domains {
        let r = async {
            let id = domain::resolve(&ctx, d)?;
            domain::refuse_dom0(id, "destroy")?;
            ctx.destroy(id).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = r {
            eprintln!("hx: {}", super::one_line(&e));
            code = super::exit_code_for(&e);
        }
    }
    Ok(code)
}
