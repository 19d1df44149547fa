//! trousse as the token issuer of the institution's registry (CNCF
//! distribution's token authentication): the registry sends a client to
//! trousse's realm with the scopes it needs (`repository:NAME:pull`), trousse
//! grants what the caller's rights allow, and answers a JWT signed with a key
//! whose certificate the registry trusts (`auth.token.rootcertbundle`).

use std::{path::Path, time::Duration};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::error::ApiError;

/// The most scopes one token request may ask for.
const MAX_SCOPES: usize = 16;
/// The longest scope accepted.
const MAX_SCOPE_CHARS: usize = 512;
/// How long an issued token is valid (distribution's clients ask again when it ends).
const LIFETIME: Duration = Duration::from_secs(300);

/// What signs the registry's tokens.
pub struct RegistryIssuer {
    /// The registry's `auth.token.service`: the tokens' audience.
    pub service: String,
    /// The registry's `auth.token.issuer`.
    pub issuer: String,
    key: EncodingKey,
    algorithm: Algorithm,
    /// The certificate chain, base64 DER, leaf first: the JWT header's `x5c`.
    chain: Vec<String>,
}

impl std::fmt::Debug for RegistryIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryIssuer")
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// One scope a client asks for: `repository:NAME:ACTIONS`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Access {
    /// `repository`, or `registry` (the catalog).
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// The repository's path in the registry.
    pub(crate) name: String,
    /// `pull`, `push`, `delete`, `*`.
    pub(crate) actions: Vec<String>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [Access],
}

impl RegistryIssuer {
    /// Reads a PEM private key (RSA, or EC P-256) and its PEM certificate chain.
    pub fn from_files(
        key: &Path,
        certificates: &Path,
        service: String,
        issuer: String,
    ) -> Result<Self, String> {
        let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let (key, algorithm) = match EncodingKey::from_rsa_pem(&key_pem) {
            Ok(key) => (key, Algorithm::RS256),
            Err(_) => match EncodingKey::from_ec_pem(&key_pem) {
                Ok(key) => (key, Algorithm::ES256),
                Err(e) => {
                    return Err(format!(
                        "{} is neither an RSA nor an EC P-256 private key in PEM ({e})",
                        key.display()
                    ))
                }
            },
        };
        let text =
            std::fs::read(certificates).map_err(|e| format!("{}: {e}", certificates.display()))?;
        let chain: Vec<String> = pem::parse_many(&text)
            .map_err(|e| format!("{}: {e}", certificates.display()))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(p.contents())
            })
            .collect();
        if chain.is_empty() {
            return Err(format!(
                "{} holds no PEM certificate: give the certificate the registry's rootcertbundle trusts",
                certificates.display()
            ));
        }
        Ok(Self {
            service,
            issuer,
            key,
            algorithm,
            chain,
        })
    }

    /// A token for `subject` granting `access`; its lifetime in seconds.
    pub(crate) fn sign(&self, subject: &str, access: &[Access]) -> Result<(String, u64), ApiError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(self.algorithm);
        header.typ = Some("JWT".into());
        header.x5c = Some(self.chain.clone());
        let claims = Claims {
            iss: &self.issuer,
            sub: subject,
            aud: &self.service,
            exp: now + LIFETIME.as_secs(),
            // a registry whose clock is a little behind still takes it
            nbf: now.saturating_sub(30),
            iat: now,
            jti: crate::auth::random_hex("a token id")?,
            access,
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| ApiError::Internal(format!("signing a registry token: {e}")))?;
        Ok((token, LIFETIME.as_secs()))
    }
}

/// Parses the `scope` values of a token request (each may hold several, space-separated).
pub(crate) fn parse_scopes<'a>(
    values: impl Iterator<Item = &'a str>,
) -> Result<Vec<Access>, ApiError> {
    let mut scopes = Vec::new();
    for scope in values.flat_map(|v| v.split(' ')).filter(|s| !s.is_empty()) {
        if scopes.len() == MAX_SCOPES {
            return Err(ApiError::bad_request(
                "too_many_scopes",
                format!("a token request names at most {MAX_SCOPES} scopes"),
            ));
        }
        if scope.len() > MAX_SCOPE_CHARS {
            return Err(ApiError::bad_request(
                "invalid_scope",
                format!("a scope has at most {MAX_SCOPE_CHARS} characters"),
            ));
        }
        // the name may hold a port (`repository:host:5000/x:pull` is not ours, but parses)
        let (kind, rest) = scope.split_once(':').ok_or_else(|| invalid_scope(scope))?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(|| invalid_scope(scope))?;
        if name.is_empty() || actions.is_empty() {
            return Err(invalid_scope(scope));
        }
        scopes.push(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions.split(',').map(str::to_string).collect(),
        });
    }
    Ok(scopes)
}

fn invalid_scope(scope: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_scope",
        format!(
            "'{}' is not a scope: TYPE:NAME:ACTIONS, e.g. repository:course/week1:pull",
            trousse_builder::error::clip(scope, 80)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_parsed_and_bounded() {
        let scopes =
            parse_scopes(["repository:inst/intro/week1:pull,push registry:catalog:*"].into_iter())
                .unwrap();
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[0].name, "inst/intro/week1");
        assert_eq!(scopes[0].actions, ["pull", "push"]);
        assert_eq!(scopes[1].kind, "registry");
        assert!(parse_scopes(["repository"].into_iter()).is_err());
        assert!(parse_scopes(["repository::pull"].into_iter()).is_err());
        let many = vec!["repository:a/b:pull"; MAX_SCOPES + 1];
        assert!(parse_scopes(many.into_iter()).is_err());
    }
}
