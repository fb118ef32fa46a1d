//! Credentials from docker's config file (`$DOCKER_CONFIG/config.json` or ~/.docker/config.json).
use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The keys docker uses for a registry: Docker Hub is `https://index.docker.io/v1/`.
fn keys_for(registry: &str) -> Vec<String> {
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ]
}

/// (username, password) for `registry` from a docker config document.
pub fn credentials_from(json: &str, registry: &str) -> Option<(String, String)> {
    let cfg: DockerConfig = serde_json::from_str(json).ok()?;
    for key in keys_for(registry) {
        let Some(e) = cfg.auths.get(&key) else {
            continue;
        };
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Some((u.clone(), p.clone()));
        }
        if let Some(a) = &e.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .ok()?;
            let s = String::from_utf8(decoded).ok()?;
            let (u, p) = s.split_once(':')?;
            return Some((u.to_string(), p.to_string()));
        }
    }
    None
}

pub fn credentials(registry: &str) -> Option<(String, String)> {
    let json = std::fs::read_to_string(docker_config_path()?).ok()?;
    credentials_from(&json, registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config() {
        let cfg = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNzOndpdGg6Y29sb25z"},
                      "127.0.0.1:5000":{"username":"a","password":"b"}}}"#;
        assert_eq!(
            credentials_from(cfg, "docker.io"),
            Some(("user".into(), "pass:with:colons".into()))
        );
        assert_eq!(
            credentials_from(cfg, "127.0.0.1:5000"),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(credentials_from(cfg, "quay.io"), None);
        assert_eq!(credentials_from("not json", "docker.io"), None);
    }
}
