//! TLS on `serve` (`--tls-cert`, `--tls-key`): rustls with ring, the
//! certificate and key read again on SIGHUP (a renewed certificate goes live
//! without a restart; a bad pair is refused and the old one kept).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum_server::tls_rustls::RustlsConfig;
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig,
};

use crate::{error::ApiError, AppState};

/// Where the certificate chain and its key are (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// The TLS settings the files give, checked (the key must match the certificate).
fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let chain = CertificateDer::pem_slice_iter(&read(&files.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| format!("{}: not a PEM private key ({e})", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks the files before the service starts (a typo fails at once, not at the first client).
pub fn check(files: &TlsFiles) -> Result<(), String> {
    server_config(files).map(|_| ())
}

/// Serves the routes over TLS until SIGINT or SIGTERM, reloading the files on SIGHUP.
pub async fn serve_tls(
    listener: TcpListener,
    state: Arc<AppState>,
    files: TlsFiles,
) -> Result<(), ApiError> {
    let config = RustlsConfig::from_config(server_config(&files).map_err(ApiError::Internal)?);
    tokio::spawn(reload_on_hangup(config.clone(), files));
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        stopping.graceful_shutdown(Some(Duration::from_secs(30)));
    });
    listener
        .set_nonblocking(true)
        .map_err(|e| ApiError::Internal(format!("the listener: {e}")))?;
    let address = listener.local_addr().ok();
    tracing::info!(?address, "serving over TLS");
    axum_server::from_tcp_rustls(listener, config)
        .map_err(|e| ApiError::Internal(format!("serving: {e}")))?
        .handle(handle)
        .serve(super::router::router(state).into_make_service())
        .await
        .map_err(|e| ApiError::Internal(format!("serving: {e}")))
}

async fn reload_on_hangup(config: RustlsConfig, files: TlsFiles) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        match server_config(&files) {
            Ok(new) => {
                config.reload_from_config(new);
                tracing::info!("TLS certificate and key read again");
            }
            Err(e) => tracing::error!("kept the TLS certificate in use: {e}"),
        }
    }
}
