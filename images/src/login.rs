//! `hx login`: checks a user name and password against a registry as docker does — `/v2/`
//! with basic credentials, or, when the registry answers with a Bearer challenge, a token from
//! its realm — before `auth` writes them into docker's config file.
use crate::error::{Error, Result};

/// A token server's answer is small; anything larger is not one.
const MAX_TOKEN_RESPONSE: usize = 64 << 10;

/// Whether `user`/`password` are accepted by `registry` (host[:port]; Docker Hub as
/// `docker.io`), reached over plain HTTP when `plain_http`.
pub async fn verify(registry: &str, user: &str, password: &str, plain_http: bool) -> Result<()> {
    let host = match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        r => r,
    };
    let scheme = if plain_http { "http" } else { "https" };
    let base = format!("{scheme}://{host}/v2/");
    crate::tls::init();
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(15))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| unreachable(registry, &e))?;
    let res = client
        .get(&base)
        .send()
        .await
        .map_err(|e| unreachable(registry, &e))?;
    if res.status().is_success() {
        return Ok(());
    }
    if res.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(status_error(registry, &base, res.status()));
    }
    let challenge = res
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .map(Challenge::parse)
        .unwrap_or(Challenge::Basic);
    let checked = match challenge {
        Challenge::Basic => client.get(&base).basic_auth(user, Some(password)),
        Challenge::Bearer { realm, service } => {
            let token = token(
                &client,
                registry,
                &realm,
                service.as_deref(),
                user,
                password,
            )
            .await?;
            client.get(&base).bearer_auth(token)
        }
    };
    let res = checked
        .send()
        .await
        .map_err(|e| unreachable(registry, &e))?;
    match res.status() {
        s if s.is_success() => Ok(()),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
            Err(Error::Unauthorized {
                registry: registry.into(),
                detail: "incorrect username or password".into(),
            })
        }
        s => Err(status_error(registry, &base, s)),
    }
}

/// What a registry's `WWW-Authenticate` asks for (RFC 7235, parsed by http-auth).
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Challenge {
    fn parse(header: &str) -> Challenge {
        for c in http_auth::ChallengeParser::new(header).flatten() {
            if !c.scheme.eq_ignore_ascii_case("bearer") {
                continue;
            }
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            if let Some(realm) = param("realm") {
                return Challenge::Bearer {
                    realm,
                    service: param("service"),
                };
            }
        }
        Challenge::Basic
    }
}

async fn token(
    client: &reqwest::Client,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    user: &str,
    password: &str,
) -> Result<String> {
    let url = reqwest::Url::parse(realm)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| Error::Registry {
            registry: registry.into(),
            detail: "its token realm is not an http(s) URL".into(),
        })?;
    let mut query = vec![("account", user)];
    if let Some(s) = service {
        query.push(("service", s));
    }
    let mut res = client
        .get(url)
        .query(&query)
        .basic_auth(user, Some(password))
        .send()
        .await
        .map_err(|e| unreachable(registry, &e))?;
    if res.status() == reqwest::StatusCode::UNAUTHORIZED
        || res.status() == reqwest::StatusCode::FORBIDDEN
    {
        return Err(Error::Unauthorized {
            registry: registry.into(),
            detail: "incorrect username or password".into(),
        });
    }
    if !res.status().is_success() {
        return Err(Error::Registry {
            registry: registry.into(),
            detail: format!("token server answered {}", res.status().as_u16()),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| unreachable(registry, &e))? {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE {
            return Err(Error::Registry {
                registry: registry.into(),
                detail: format!("token response larger than {MAX_TOKEN_RESPONSE} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    token_from(&body).ok_or_else(|| Error::Registry {
        registry: registry.into(),
        detail: "token response without a token".into(),
    })
}

/// `token` or `access_token` of a token server's JSON answer.
fn token_from(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let a: Answer = serde_json::from_slice(body).ok()?;
    a.token
        .or(a.access_token)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
}

fn unreachable(registry: &str, e: &reqwest::Error) -> Error {
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail = format!("{detail}: {s}");
        src = s.source();
    }
    Error::RegistryUnreachable {
        registry: registry.into(),
        detail,
    }
}

fn status_error(registry: &str, url: &str, status: reqwest::StatusCode) -> Error {
    Error::Registry {
        registry: registry.into(),
        detail: format!("GET {url}: {}", status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn challenges_as_registries_send_them() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="hx-test""#),
            Challenge::Basic
        );
        assert_eq!(Challenge::parse("Bearer service=\"x\""), Challenge::Basic);
        assert_eq!(Challenge::parse("\u{1b}[2J garbage"), Challenge::Basic);
    }

    #[test]
    fn tokens_from_token_servers() {
        assert_eq!(token_from(br#"{"token":"abc"}"#), Some("abc".into()));
        assert_eq!(token_from(br#"{"access_token":"xyz"}"#), Some("xyz".into()));
        assert_eq!(token_from(br#"{"token":"a\nb"}"#), None);
        assert_eq!(token_from(b"[]"), None);
    }

    proptest! {
        #[test]
        fn any_header_or_body_is_parsed_or_refused(h in "\\PC{0,200}", b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Challenge::parse(&h);
            let _ = token_from(&b);
        }
    }
}
