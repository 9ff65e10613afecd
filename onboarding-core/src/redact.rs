//! URLs fit for logs and `Debug` output: passwords hidden.

use std::fmt;

/// A URL that may hold a password (a database, Redis or broker URL): its
/// `Debug` and `Display` show it through [`redact_url`]; only
/// [`SecretUrl::expose`] gives the password, to connect with it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password (use only to connect).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

/// `url` with every password replaced by `***`: the password of the user
/// info (`scheme://user:secret@host` → `scheme://user:***@host`) and the
/// value of every query parameter whose name ends in `password`, in any
/// case (`?password=…`, `?sslpassword=…`).
///
/// A password may hold `:` or `@` (the user info ends at the last `@`
/// before the path). A user name alone is not a secret and stays; so does
/// everything that is not a URL with `://` (`memory`, `sqlite::memory:`),
/// apart from its query parameters.
///
/// ```
/// use onboarding_core::redact_url;
/// assert_eq!(redact_url("postgres://app:s3:cr@t@db:5432/onb"), "postgres://app:***@db:5432/onb");
/// assert_eq!(redact_url("mysql://root@db/x?Password=hunter2&ssl=1"), "mysql://root@db/x?Password=***&ssl=1");
/// ```
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (url, None),
    };
    let mut out = hide_user_password(before_query);
    if let Some(query) = query {
        out.push('?');
        out.push_str(&hide_query_passwords(query));
    }
    out
}

/// `scheme://user:***@rest` when there is a user info with a password.
fn hide_user_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    // The user info ends at the last `@` of the URL (before the query): a
    // password may hold `@`, and a path rarely does (hiding too much is safe).
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let user_info = &rest[..at];
    let Some(colon) = user_info.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..authority_start],
        &user_info[..colon],
        &rest[at..]
    )
}

/// `name=***` for every parameter whose name ends in `password`.
fn hide_query_passwords(query: &str) -> String {
    let (params, fragment) = match query.split_once('#') {
        Some((params, fragment)) => (params, Some(fragment)),
        None => (query, None),
    };
    let mut out = params
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if name.to_ascii_lowercase().ends_with("password") => {
                format!("{name}=***")
            }
            _ => param.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{redact_url, SecretUrl};

    #[test]
    fn secret_urls_show_only_redacted() {
        let url = SecretUrl::new("postgres://app:s3cret@db:5432/onb?sslmode=disable");
        assert_eq!(
            format!("{url:?}"),
            "\"postgres://app:***@db:5432/onb?sslmode=disable\""
        );
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db:5432/onb?sslmode=disable"
        );
        assert_eq!(
            url.expose(),
            "postgres://app:s3cret@db:5432/onb?sslmode=disable"
        );
    }

    #[test]
    fn user_info_passwords_are_hidden() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/onb",
                "postgres://app:***@db:5432/onb",
            ),
            (
                "amqp://bob:s3cr3t@broker:5672/%2f",
                "amqp://bob:***@broker:5672/%2f",
            ),
            ("redis://:pw@h/0", "redis://:***@h/0"),
            // A password holding `@` or `:`.
            ("amqp://a:b@c@h/v", "amqp://a:***@h/v"),
            ("rediss://u:p@ss@h", "rediss://u:***@h"),
            ("postgres://u:a:b:c@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p@ss:w@rd@h:5432", "postgres://u:***@h:5432"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn query_passwords_are_hidden_in_any_case() {
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/x?password=hunter2&ssl-mode=disabled"),
            "mysql://root@127.0.0.1/x?password=***&ssl-mode=disabled"
        );
        assert_eq!(
            redact_url("postgres://h/db?sslmode=require&PASSWORD=a@b&SslPassword=k#f"),
            "postgres://h/db?sslmode=require&PASSWORD=***&SslPassword=***#f"
        );
        assert_eq!(
            redact_url("postgres://u:p@h/db?password=x"),
            "postgres://u:***@h/db?password=***"
        );
    }

    #[test]
    fn what_holds_no_password_stays() {
        for url in [
            "redis://127.0.0.1:6379",
            "amqp://bob@host",
            "postgres://postgres@127.0.0.1:5432/postgres",
            "sqlite:///tmp/a.db",
            "sqlite://onboarding.db?mode=rwc",
            "sqlite::memory:",
            "redis+unix:///run/redis.sock",
            "memory",
            "database",
            "not a url",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
