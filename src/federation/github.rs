//! GitHub sign-in (OAuth 2, not OpenID Connect): the person from the REST API, their verified
//! primary email, and organisation and team memberships as groups (`org` and `org/team`).

use serde_json::Value;

use super::upstream::{CallError, Upstream};

/// What GitHub says about the person.
#[derive(Debug, Clone)]
pub struct GithubPerson {
    /// The numeric user id: logins can be renamed, ids cannot.
    pub id: String,
    pub login: String,
    pub name: Option<String>,
    /// The primary email, if verified.
    pub email: Option<String>,
    /// Organisation logins and `org/team-slug`, lower-cased.
    pub groups: Vec<String>,
    pub organizations: Vec<String>,
}

pub async fn person(up: &Upstream, access_token: &str) -> Result<GithubPerson, CallError> {
    let api = &up.provider.github_api_url;
    let user = up.get(&format!("{api}/user"), access_token).await?;
    let id = match user.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(CallError::Invalid("GitHub's user has no id".into())),
    };
    let login = user.get("login").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = user.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string);
    let emails = up.get(&format!("{api}/user/emails"), access_token).await?;
    let email = emails.as_array().into_iter().flatten().find_map(|e| {
        let primary = e.get("primary").and_then(Value::as_bool) == Some(true);
        let verified = e.get("verified").and_then(Value::as_bool) == Some(true);
        e.get("email").and_then(Value::as_str).filter(|_| primary && verified).map(str::to_string)
    });
    let orgs = up.get(&format!("{api}/user/orgs?per_page=100"), access_token).await?;
    let organizations: Vec<String> = orgs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("login").and_then(Value::as_str))
        .map(str::to_ascii_lowercase)
        .collect();
    let teams = up.get(&format!("{api}/user/teams?per_page=100"), access_token).await?;
    let mut groups = organizations.clone();
    for t in teams.as_array().into_iter().flatten() {
        let org = t.get("organization").and_then(|o| o.get("login")).and_then(Value::as_str);
        if let (Some(org), Some(slug)) = (org, t.get("slug").and_then(Value::as_str)) {
            groups.push(format!("{}/{}", org.to_ascii_lowercase(), slug.to_ascii_lowercase()));
        }
    }
    Ok(GithubPerson { id, login, name, email, groups, organizations })
}
