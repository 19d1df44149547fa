//! Registry credentials the way docker, podman and skopeo users keep them:
//! `REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`,
//! with `auths`, `credHelpers` and `credsStore` (`docker-credential-*`).

use std::{io::Write, path::PathBuf, process::Stdio};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::RegistryError;

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(rename = "identitytoken")]
    identity_token: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// The auth files to read, first match wins.
fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        files.push(PathBuf::from(d).join("config.json"));
    }
    if let Some(home) = dirs::home_dir() {
        files.push(home.join(".docker/config.json"));
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(runtime).join("containers/auth.json"));
    }
    files
}

/// The keys an `auths` map may use for a registry host.
fn candidate_keys(host: &str) -> Vec<String> {
    let mut keys = vec![
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    if host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io" {
        keys.push("https://index.docker.io/v1/".into());
    }
    keys
}

/// The credentials for a registry host; anonymous when none are configured.
pub fn credentials_for(host: &str) -> Result<RegistryAuth, RegistryError> {
    for file in auth_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let config: AuthFile =
            serde_json::from_str(&text).map_err(|source| RegistryError::InvalidJson {
                what: "registry auth file",
                location: file.clone(),
                source,
            })?;
        let keys = candidate_keys(host);
        if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
            return helper_credentials(helper, host);
        }
        if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) {
            return entry_credentials(entry, host);
        }
        if let Some(store) = &config.creds_store {
            return helper_credentials(store, host);
        }
    }
    Ok(RegistryAuth::Anonymous)
}

fn entry_credentials(entry: &AuthEntry, host: &str) -> Result<RegistryAuth, RegistryError> {
    if let Some(token) = &entry.identity_token {
        return Ok(RegistryAuth::Bearer(token.clone()));
    }
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic(u.clone(), p.clone()));
    }
    let invalid = || {
        RegistryError::Unsupported(format!(
            "the stored credentials for {host} are not valid base64 user:password"
        ))
    };
    let encoded = entry.auth.as_deref().ok_or_else(invalid)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (user, password) = decoded.split_once(':').ok_or_else(invalid)?;
    Ok(RegistryAuth::Basic(user.to_string(), password.to_string()))
}

fn helper_credentials(helper: &str, host: &str) -> Result<RegistryAuth, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let failed = |why: String| {
        RegistryError::Unsupported(format!("credential helper {program} for {host}: {why}"))
    };
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(host.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Ok(RegistryAuth::Anonymous);
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| failed("it did not answer with JSON".into()))?;
    if answer.username == "<token>" {
        Ok(RegistryAuth::Bearer(answer.secret))
    } else {
        Ok(RegistryAuth::Basic(answer.username, answer.secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_docker_config_entries() {
        let entry = AuthEntry {
            auth: Some(base64::engine::general_purpose::STANDARD.encode("teacher:s3cret:x")),
            username: None,
            password: None,
            identity_token: None,
        };
        assert_eq!(
            entry_credentials(&entry, "r.example").unwrap(),
            RegistryAuth::Basic("teacher".into(), "s3cret:x".into())
        );
        let bad = AuthEntry {
            auth: Some("%%%".into()),
            username: None,
            password: None,
            identity_token: None,
        };
        let err = entry_credentials(&bad, "r.example")
            .unwrap_err()
            .to_string();
        assert!(err.contains("r.example") && !err.contains("%%%"));
    }
}
