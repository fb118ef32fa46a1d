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

/// The key `hx login` writes for `registry`, docker's: Docker Hub's is its v1 URL.
pub fn key_for(registry: &str) -> String {
    keys_for(registry).swap_remove(0)
}

/// Writes `user:password` for `registry` into docker's config file, keeping everything else
/// in it; the file is replaced atomically and readable by its owner only, as docker's.
pub fn save_credentials(registry: &str, user: &str, password: &str) -> crate::Result<PathBuf> {
    let path = docker_config_path().ok_or_else(no_home)?;
    save_credentials_in(&path, registry, user, password)?;
    Ok(path)
}

fn save_credentials_in(
    path: &std::path::Path,
    registry: &str,
    user: &str,
    password: &str,
) -> crate::Result<()> {
    let mut cfg = read_config_value(path)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let auths = cfg
        .as_object_mut()
        .expect("read_config_value returns an object")
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    auths
        .as_object_mut()
        .expect("made an object above")
        .insert(key_for(registry), serde_json::json!({ "auth": auth }));
    write_config_value(path, &cfg)
}

/// Removes every entry for `registry`; false when there was none.
pub fn remove_credentials(registry: &str) -> crate::Result<bool> {
    remove_credentials_in(&docker_config_path().ok_or_else(no_home)?, registry)
}

fn remove_credentials_in(path: &std::path::Path, registry: &str) -> crate::Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let mut cfg = read_config_value(path)?;
    let Some(auths) = cfg.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        return Ok(false);
    };
    let mut removed = false;
    for key in keys_for(registry) {
        removed |= auths.remove(&key).is_some();
    }
    if removed {
        write_config_value(path, &cfg)?;
    }
    Ok(removed)
}

fn no_home() -> crate::Error {
    crate::Error::Store {
        path: PathBuf::from("~/.docker/config.json"),
        detail: "neither DOCKER_CONFIG nor HOME is set".into(),
    }
}

/// docker's config file as a JSON object (empty when absent); a file that is not one is an
/// error naming it, not something to overwrite.
fn read_config_value(path: &std::path::Path) -> crate::Result<serde_json::Value> {
    const MAX: u64 = 1 << 20;
    let bytes = match std::fs::File::open(path) {
        Ok(f) => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX + 1), &mut v)
                .map_err(|e| crate::Error::io(path, e))?;
            v
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(serde_json::json!({})),
        Err(e) => return Err(crate::Error::io(path, e)),
    };
    let bad = |detail: String| crate::Error::Store {
        path: path.to_path_buf(),
        detail,
    };
    if bytes.len() as u64 > MAX {
        return Err(bad(format!("larger than {MAX} bytes")));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    Ok(v)
}

fn write_config_value(path: &std::path::Path, v: &serde_json::Value) -> crate::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| crate::Error::io(dir, e))?;
    let tmp = dir.join(format!(".config.json.hx-{}", std::process::id()));
    let mut bytes = serde_json::to_vec_pretty(v).expect("a JSON value serializes");
    bytes.push(b'\n');
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        crate::Error::io(path, e)
    })
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

    #[test]
    fn login_and_logout_keep_the_rest_of_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        save_credentials_in(&path, "127.0.0.1:5000", "u", "p:w").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            credentials_from(&text, "127.0.0.1:5000"),
            Some(("u".into(), "p:w".into()))
        );
        std::fs::write(
            &path,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"eDp5"}},"credsStore":"pass"}"#,
        )
        .unwrap();
        save_credentials_in(&path, "docker.io", "hub", "pw").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["credsStore"], "pass");
        assert!(v["auths"]["https://index.docker.io/v1/"]["auth"].is_string());
        assert!(remove_credentials_in(&path, "127.0.0.1:5000").unwrap());
        assert!(!remove_credentials_in(&path, "127.0.0.1:5000").unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(credentials_from(&text, "127.0.0.1:5000"), None);
        assert!(credentials_from(&text, "docker.io").is_some());
        // Not an object: refused, left as it is.
        std::fs::write(&path, "[1]").unwrap();
        assert!(save_credentials_in(&path, "x.io", "a", "b").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1]");
    }
}
