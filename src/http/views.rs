//! Askama views for the HTML pages. Handlers fill these structs; templates live in `templates/`.
//!
//! All pages extend `templates/base.html`, link exactly one stylesheet (`css_href`) and,
//! when `css_href` ends in `style.css`, an SVG favicon served from the same directory
//! (`favicon.svg`). The pages contain no scripts, no inline styles and no external
//! resources, so they work under
//! `default-src 'none'; style-src 'self'; img-src 'self' data:; form-action ...`.
//! Every value is HTML-escaped by askama; nothing is marked `|safe`.
use askama::Template;

/// The sign-in form.
///
/// Form contract: `POST {action}` with fields `username`, `password`,
/// hidden `csrf_token` and hidden `next`.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub brand: String,
    pub css_href: String, // URL of static/style.css (the issuer may have a path prefix)
    pub action: String,   // form action URL
    pub csrf_token: String,
    pub next: String,                // hidden field "next": where to continue after login (may be empty)
    pub username: String,            // prefilled after a failed attempt
    pub error: Option<String>,       // e.g. "Wrong username or password."
    pub client_name: Option<String>, // "Sign in to continue to {client_name}"
    /// "Sign in with {name}" links to the company identity providers.
    pub providers: Vec<ProviderLink>,
    /// Show the username and password form.
    pub password_login: bool,
}

/// A company identity provider on the login page.
pub struct ProviderLink {
    pub name: String,
    pub href: String,
}

/// The consent screen shown before an authorization code is issued.
///
/// Form contract: `POST {action}` with hidden `csrf_token`, hidden `request_id`, and
/// `decision=approve` or `decision=deny` from the two submit buttons. A separate form
/// posts `csrf_token` to `logout_action` ("Not you? Sign out").
#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    pub brand: String,
    pub css_href: String,
    pub action: String,
    pub csrf_token: String,
    pub request_id: String,    // hidden field "request_id"
    pub username: String,      // who is signed in
    pub logout_action: String, // POST target of "Not you? Sign out"
    pub client_name: String,
    pub client_verified: bool,
    pub client_identity: String, // one line about who vouches for the client, e.g. "Unverified: this app registered itself" / "Verified: claude.ai" / "Registered by your administrator"
    pub resource_name: String,   // the MCP server
    pub resource_uri: String,
    pub scopes: Vec<ScopeLine>,
    pub previously_granted: bool,
    pub redirect_host: String,
    pub redirect_is_loopback: bool,
    /// The client's logo, served from this server (fetched through the hardened fetcher).
    pub client_logo: Option<String>,
}

/// One requested scope on the consent screen.
pub struct ScopeLine {
    pub name: String,
    pub description: String,
    /// Not part of an earlier grant. Only highlighted when `ConsentPage::previously_granted`.
    pub is_new: bool,
}

/// A dead end: something went wrong and we cannot (or must not) send the browser back
/// to the client. `code` is the OAuth error code, e.g. `invalid_request`.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub brand: String,
    pub css_href: String,
    pub title: String,
    pub message: String,
    pub code: Option<String>,
    /// A way back to the app the person may follow: (href, the host it leads to).
    pub link: Option<(String, String)>,
}

/// A simple informational page, e.g. "You are signed out".
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub brand: String,
    pub css_href: String,
    pub title: String,
    pub message: String,
}

impl ConsentPage {
    /// True when the client already holds a grant and is asking for additional scopes;
    /// the page then says so and marks the new ones.
    pub fn asks_for_more(&self) -> bool {
        self.previously_granted && self.scopes.iter().any(|s| s.is_new)
    }
}

/// `favicon.svg` next to the stylesheet, if `css_href` points at `.../style.css`
/// (a query string or fragment is ignored). Otherwise no icon link is emitted.
fn sibling_asset(css_href: &str, name: &str) -> Option<String> {
    let path = css_href.split(['?', '#']).next()?;
    let dir = path.strip_suffix("style.css")?;
    Some(format!("{dir}{name}"))
}

macro_rules! page_helpers {
    ($($page:ty),* $(,)?) => {$(
        impl $page {
            /// URL of `static/favicon.svg`, derived from `css_href`.
            pub fn favicon_href(&self) -> Option<String> {
                sibling_asset(&self.css_href, "favicon.svg")
            }

            /// The product name shown in the header and the title bar.
            pub fn brand_name(&self) -> &str {
                let b = self.brand.trim();
                if b.is_empty() { "Portcullis" } else { b }
            }
        }
    )*};
}

/// Asks before signing out: signing out changes state, so it is a POST with the CSRF token.
#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub brand: String,
    pub css_href: String,
    pub action: String,
    pub csrf_token: String,
}

/// The signed-in person's connected apps, with revoke, and a password change form.
#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub brand: String,
    pub css_href: String,
    pub username: String,
    pub csrf_token: String,
    pub revoke_action: String,
    pub password_action: String,
    pub logout_action: String,
    pub apps: Vec<AppLine>,
    /// A confirmation ("Access revoked") or an error from the last form.
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// A connected app on the account page.
pub use crate::flows::account::ConnectedApp as AppLine;

page_helpers!(LoginPage, ConsentPage, ErrorPage, MessagePage, LogoutPage, AccountPage);

/// One click before a code goes to a native app that holds a grant already (RFC 8252 §8.6: a
/// public client on a loopback or private-use redirect can be impersonated by any program on
/// the device). Reuses the consent page's CSS classes.
///
/// Form contract: as [`ConsentPage`] (`POST {action}` with hidden `csrf_token` and `request_id`,
/// `decision=approve` to continue, `decision=deny` to cancel), so the consent endpoint answers it.
#[derive(Template)]
#[template(path = "continue.html")]
pub struct ContinuePage {
    pub brand: String,
    pub css_href: String,
    pub action: String,
    pub csrf_token: String,
    pub request_id: String,
    pub username: String,
    pub logout_action: String,
    pub client_name: String,
    pub client_identity: String,
    pub resource_name: String,
    pub resource_uri: String,
    pub redirect_host: String,
}

page_helpers!(ContinuePage);
