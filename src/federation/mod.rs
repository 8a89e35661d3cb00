//! Company sign-in: Portcullis as a relying party of the company's identity provider (OpenID
//! Connect, or GitHub's OAuth 2). The flow itself is `flows::federation`; here are its parts:
//! the declared providers, their metadata and keys (fetched and cached), the token checks, and
//! the calls to the provider's endpoints.

pub mod claims;
pub mod github;
pub mod keys;
pub mod provider;
pub mod upstream;

use std::sync::Arc;

pub use upstream::Upstream;

/// Every configured provider, in the configured order (the login page's order).
#[derive(Debug, Clone, Default)]
pub struct Federation {
    providers: Arc<Vec<Upstream>>,
}

impl Federation {
    pub fn new(
        providers: &[provider::Provider],
        test_ca_file: Option<std::path::PathBuf>,
    ) -> Result<Federation, crate::clients::fetch::FetchError> {
        let providers =
            providers.iter().map(|p| Upstream::new(p.clone(), test_ca_file.clone())).collect::<Result<Vec<_>, _>>()?;
        Ok(Federation { providers: Arc::new(providers) })
    }

    pub fn get(&self, id: &str) -> Option<&Upstream> {
        self.providers.iter().find(|u| u.provider.id == id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Upstream> {
        self.providers.iter()
    }

    /// The provider that serves an email's domain (for `login_hint` and domain hints).
    pub fn for_domain(&self, domain: &str) -> Option<&Upstream> {
        self.providers.iter().find(|u| u.provider.serves_domain(domain))
    }
}
