//! `hx login` / `hx logout`: credentials in docker's config file (`$DOCKER_CONFIG/config.json`
//! or ~/.docker/config.json), checked against the registry first, as docker does.
use std::io::{BufRead, IsTerminal};

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The registry (HOST[:PORT]); Docker Hub when left out
    pub server: Option<String>,
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password (visible in the process list and shell history: prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin (one line)
    #[arg(long)]
    pub password_stdin: bool,
    /// Reach this registry over plain HTTP (localhost and 127.0.0.0/8 always are)
    #[arg(long)]
    pub insecure: bool,
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// The registry (HOST[:PORT]); Docker Hub when left out
    pub server: Option<String>,
}

/// The registry as docker keys it: a URL's host, Docker Hub as `docker.io`.
fn registry_of(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".into(),
        s => s.to_string(),
    }
}

fn usage(msg: &str) -> anyhow::Result<i32> {
    errln!("hx: {msg}");
    Ok(125)
}

pub async fn login(args: LoginArgs) -> anyhow::Result<i32> {
    let registry = registry_of(args.server.as_deref());
    if args.password.is_some() && args.password_stdin {
        return usage("--password and --password-stdin are mutually exclusive");
    }
    let Some(user) = args.username.filter(|u| !u.is_empty()) else {
        return usage("login needs --username (hx does not prompt)");
    };
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => {
            errln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, true) => {
            if std::io::stdin().is_terminal() {
                return usage("--password-stdin reads a pipe or a file, not a terminal");
            }
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => return usage("login needs --password-stdin or --password"),
    };
    if password.is_empty() {
        return usage("the password is empty");
    }
    let plain_http = args.insecure || hx_images::pull::is_local(&registry);
    hx_images::login::verify(&registry, &user, &password, plain_http).await?;
    let path = hx_images::auth::save_credentials(&registry, &user, &password)?;
    tracing::info!(path = %path.display(), "credentials saved");
    outln!("Login Succeeded");
    Ok(0)
}

pub async fn logout(args: LogoutArgs) -> anyhow::Result<i32> {
    let registry = registry_of(args.server.as_deref());
    let key = hx_images::auth::key_for(&registry);
    if hx_images::auth::remove_credentials(&registry)? {
        outln!("Removing login credentials for {key}");
    } else {
        outln!("Not logged in to {key}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::registry_of;

    #[test]
    fn servers_as_docker_names_them() {
        assert_eq!(registry_of(None), "docker.io");
        assert_eq!(
            registry_of(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_of(Some("127.0.0.1:5000")), "127.0.0.1:5000");
        assert_eq!(
            registry_of(Some("http://reg.example:5000/v2/")),
            "reg.example:5000"
        );
    }
}
