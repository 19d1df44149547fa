//! How trousse reaches channels and indexes: channel URLs, credentials kept
//! out of inputs, mirrors, and the one HTTP client and gateway of a build.

pub mod catalog;
pub mod channel_url;
pub mod credentials;
pub mod mirrors;

use rattler_cache::package_cache::PackageCache;
use rattler_networking::LazyClient;
use rattler_repodata_gateway::Gateway;

use crate::cache::CacheDir;

/// The HTTP client for channels and packages.
pub(crate) fn http_client(mirrors: &mirrors::Mirrors) -> LazyClient {
    let client = reqwest::Client::builder()
        .user_agent(concat!("trousse/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    // credentials come from the process's memory and the operator's file, never from a URL
    let authentication =
        rattler_networking::AuthenticationMiddleware::from_auth_storage(credentials::storage());
    // a mirror's requests are rewritten first, then authenticated for the mirror's host
    let mut stack = reqwest_middleware::ClientBuilder::new(client);
    if !mirrors.is_empty() {
        stack = stack.with(mirrors.middleware());
    }
    LazyClient::from(stack.with_arc(std::sync::Arc::new(authentication)).build())
}

/// The repodata gateway over the cache.
pub(crate) fn gateway(cache: &CacheDir, client: &LazyClient) -> Gateway {
    Gateway::builder()
        .with_cache_dir(cache.repodata())
        .with_package_cache(PackageCache::new(cache.packages()))
        .with_client(client.clone())
        .finish()
}
