//! Company sign-in: Portcullis as a relying party of the company's identity provider (OpenID
//! Connect, or GitHub's OAuth 2). The flow itself is `flows::federation`; here are its parts:
//! the declared providers, their metadata and keys (fetched and cached), the token checks, and
//! the calls to the provider's endpoints.

pub mod claims;
pub mod enterprise;
pub mod github;
pub mod keys;
pub mod provider;
pub mod trusted;
pub mod upstream;

use std::sync::Arc;

pub use upstream::Upstream;

/// Every configured provider, in the configured order (the login page's order).
#[derive(Debug, Clone, Default)]
pub struct Federation {
    providers: Arc<Vec<Upstream>>,
    trusted: Arc<Vec<trusted::TrustedIssuer>>,
}

impl Federation {
    pub fn new(
        providers: &[provider::Provider],
        trusted: &[trusted::TrustedIssuerConfig],
        test_ca_file: Option<std::path::PathBuf>,
    ) -> Result<Federation, crate::clients::fetch::FetchError> {
        let providers =
            providers.iter().map(|p| Upstream::new(p.clone(), test_ca_file.clone())).collect::<Result<Vec<_>, _>>()?;
        let trusted = trusted
            .iter()
            .map(|t| trusted::TrustedIssuer::new(t.clone(), test_ca_file.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Federation { providers: Arc::new(providers), trusted: Arc::new(trusted) })
    }

    /// The trusted ID-JAG issuer named `issuer`.
    pub fn trusted(&self, issuer: &str) -> Option<&trusted::TrustedIssuer> {
        self.trusted.iter().find(|t| t.config.issuer == issuer)
    }

    pub fn accepts_id_jags(&self) -> bool {
        !self.trusted.is_empty()
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
