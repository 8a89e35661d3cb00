//! Askama views for the HTML pages. Handlers fill these structs; templates live in `templates/`.
//!
//! All pages extend `templates/base.html`, link exactly one stylesheet (`css_href`) and,
//! when `css_href` ends in `style.css`, an SVG favicon served from the same directory
//! (`favicon.svg`). The pages contain no scripts, no inline styles and no external
//! resources, so they work under
//! `default-src 'none'; style-src 'self'; img-src 'self' data:; form-action ...`.
//! Every value is HTML-escaped by askama; nothing is marked `|safe`.
use askama::Template;

/// Whose pages these are: the operator's organisation name and logo (`brand_name`,
/// `brand_logo_url`), "Portcullis" by default. `From<&str>` keeps `brand: "Portcullis".into()`
/// working for a view that names no logo.
#[derive(Clone, Debug, Default)]
pub struct Brand {
    pub name: String,
    pub logo_url: Option<String>,
}

impl Brand {
    pub fn new(settings: &crate::config::BrandSettings) -> Brand {
        Brand { name: settings.name.clone(), logo_url: settings.logo_url.clone() }
    }
}

impl From<&str> for Brand {
    fn from(name: &str) -> Brand {
        Brand { name: name.to_string(), logo_url: None }
    }
}

/// What `base.html` reads from a view's `brand` field, whether a [`Brand`] or a plain name.
pub trait BrandParts {
    fn brand_text(&self) -> &str;
    fn brand_logo(&self) -> Option<&str> {
        None
    }
}

impl BrandParts for Brand {
    fn brand_text(&self) -> &str {
        &self.name
    }
    fn brand_logo(&self) -> Option<&str> {
        self.logo_url.as_deref()
    }
}

impl BrandParts for String {
    fn brand_text(&self) -> &str {
        self
    }
}

/// The sign-in form.
///
/// Form contract: `POST {action}` with fields `username`, `password`,
/// hidden `csrf_token` and hidden `next`.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub brand: Brand,
    pub css_href: String, // URL of static/style.css (the issuer may have a path prefix)
    pub action: String,   // form action URL
    pub csrf_token: String,
    pub next: String,          // hidden field "next": where to continue after login (may be empty)
    pub username: String,      // prefilled after a failed attempt
    pub error: Option<String>, // e.g. "Wrong username or password."
    pub resource_name: Option<String>, // "Sign in to use {resource_name}": the MCP server the operator registered
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

pub use crate::flows::consent::Caution;
pub use crate::flows::describe::Vouched;

/// The consent screen shown before an authorization code is issued.
///
/// Form contract: `POST {action}` with hidden `csrf_token`, hidden `request_id`, and
/// `decision=approve` or `decision=deny` from the two submit buttons (their text is "Allow" and
/// "Deny"). A separate form posts `csrf_token` to `logout_action` ("Not you? Sign out").
///
/// Order, so that what is granted is visible at 390 px without scrolling: the heading (which
/// names the app only when the operator registered it, else says what was verified), what the
/// app will be able to do, the facts (app, MCP server, return address), one caution.
#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    pub brand: Brand,
    pub css_href: String,
    pub action: String,
    pub csrf_token: String,
    pub request_id: String,    // hidden field "request_id"
    pub username: String,      // who is signed in
    pub logout_action: String, // POST target of "Not you? Sign out"
    pub account_href: String,  // Connected apps, where access is removed
    /// Shortened, one line; self-chosen unless `vouched` is `Administrator`.
    pub client_name: String,
    pub vouched: Vouched,
    pub resource_name: String, // the MCP server
    pub resource_uri: String,
    /// New permissions first.
    pub scopes: Vec<ScopeLine>,
    pub previously_granted: bool,
    pub redirect_host: String,
    /// A loopback address or a private-use scheme: an app on this device.
    pub redirect_on_device: bool,
    pub caution: Option<Caution>,
    /// The client's logo, served from this server (fetched through the hardened fetcher).
    pub client_logo: Option<String>,
}

/// One requested scope on the consent screen.
pub struct ScopeLine {
    pub name: String,
    pub description: String,
    /// Not part of an earlier grant.
    pub is_new: bool,
}

/// A dead end: something went wrong and we cannot (or must not) send the browser back
/// to the client. `code` is the OAuth error code, e.g. `invalid_request`.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub brand: Brand,
    pub css_href: String,
    pub title: String,
    /// What happened and what to do, for the person.
    pub message: String,
    /// The technical reason, for the app's developer (shown smaller).
    pub detail: Option<String>,
    pub code: Option<String>,
    /// The request's `X-Request-Id`, so support can find the log line.
    pub request_id: Option<String>,
    /// A way back to the app the person may follow: (href, the host it leads to).
    pub link: Option<(String, String)>,
}

/// A simple informational page, e.g. "You are signed out", with the ways on from it.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub brand: Brand,
    pub css_href: String,
    pub title: String,
    pub message: String,
    /// Links shown as buttons; the first is the primary one.
    pub links: Vec<PageLinkView>,
}

/// A link shown as a button.
pub struct PageLinkView {
    pub href: String,
    pub label: String,
}

impl ConsentPage {
    /// The client already holds a grant and asks for more: the page says "wants more access"
    /// and lists the new permissions first, the ones already allowed muted.
    pub fn asks_for_more(&self) -> bool {
        self.previously_granted && self.scopes.iter().any(|s| s.is_new)
    }

    /// Who is asking, as the heading says it: the name only when the operator chose it.
    pub fn asker(&self) -> String {
        match &self.vouched {
            Vouched::Administrator => self.client_name.clone(),
            Vouched::Host(host) => format!("an app from {host}"),
            Vouched::Nobody => "an unverified app".to_string(),
        }
    }

    pub fn heading(&self) -> String {
        if self.asks_for_more() {
            format!("{} wants more access to {}", capitalised(&self.asker()), self.resource_name)
        } else {
            format!("Allow {} to use {}?", self.asker(), self.resource_name)
        }
    }

    pub fn new_scopes(&self) -> impl Iterator<Item = &ScopeLine> {
        let step_up = self.asks_for_more();
        self.scopes.iter().filter(move |s| !step_up || s.is_new)
    }

    pub fn kept_scopes(&self) -> impl Iterator<Item = &ScopeLine> {
        let step_up = self.asks_for_more();
        self.scopes.iter().filter(move |s| step_up && !s.is_new)
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
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

            /// The organisation's name shown in the header and the title bar.
            pub fn brand_name(&self) -> &str {
                let b = BrandParts::brand_text(&self.brand).trim();
                if b.is_empty() { "Portcullis" } else { b }
            }

            /// The organisation's logo, when the operator set one.
            pub fn brand_logo(&self) -> Option<&str> {
                BrandParts::brand_logo(&self.brand)
            }
        }
    )*};
}

/// Asks before signing out: signing out changes state, so it is a POST with the CSRF token.
#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub brand: Brand,
    pub css_href: String,
    pub action: String,
    pub csrf_token: String,
    /// "Stay signed in": back to the connected apps.
    pub cancel_href: String,
}

/// The signed-in person's connected apps, with revoke, and a password change form.
#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub brand: Brand,
    pub css_href: String,
    pub username: String,
    pub csrf_token: String,
    pub revoke_action: String,
    pub password_action: String,
    pub logout_action: String,
    pub apps: Vec<AppLine>,
    /// A confirmation ("Access revoked: …") or an error from a revoke form, shown at the top.
    pub notice: Option<String>,
    pub error: Option<String>,
    /// The password form's outcome, shown beside the form.
    pub password: PasswordOutcome,
}

/// What the password form shows after a post.
#[derive(Default)]
pub struct PasswordOutcome {
    pub changed: bool,
    pub error: Option<String>,
    /// The field the error is about (`None` with an error: the whole form).
    pub invalid: Option<PasswordField>,
}

pub use crate::flows::account::PasswordField;

/// `aria-invalid` for each password field: the one the error names.
impl AccountPage {
    pub fn current_invalid(&self) -> bool {
        self.password.invalid == Some(PasswordField::Current)
    }
    pub fn new_invalid(&self) -> bool {
        self.password.invalid == Some(PasswordField::New)
    }
    pub fn confirm_invalid(&self) -> bool {
        self.password.invalid == Some(PasswordField::Confirm)
    }
}

/// `/`: what this server is, and the ways on: sign in, connected apps, the operator's docs.
#[derive(Template)]
#[template(path = "landing.html")]
pub struct LandingPage {
    pub brand: Brand,
    pub css_href: String,
    /// The signed-in person's username.
    pub username: Option<String>,
    pub login_href: String,
    pub account_href: String,
    pub logout_action: String,
    pub csrf_token: String,
    /// The OAuth metadata document (RFC 8414), for operators and developers.
    pub metadata_href: String,
}

/// A connected app on the account page.
pub use crate::flows::account::ConnectedApp as AppLine;

page_helpers!(LoginPage, ConsentPage, ErrorPage, MessagePage, LogoutPage, AccountPage, LandingPage);
/// One click before a code goes to a native app that holds a grant already (RFC 8252 §8.6: a
/// public client on a loopback or private-use redirect can be impersonated by any program on
/// the device). Reuses the consent page's CSS classes.
///
/// Form contract: as [`ConsentPage`] (`POST {action}` with hidden `csrf_token` and `request_id`,
/// `decision=approve` to continue, `decision=deny` to cancel), so the consent endpoint answers it.
#[derive(Template)]
#[template(path = "continue.html")]
pub struct ContinuePage {
    pub brand: Brand,
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
