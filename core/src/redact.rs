//! The one URL redactor: what a URL looks like in messages, logs and `Debug` output.

use url::Url;

/// `url` with any password and every query value replaced by `***`, for messages and logs.
/// Text that does not parse as a URL but still looks like `scheme://user:password@…` (a typo
/// in the scheme, say) has its password hidden the same way; anything else (an scp-like
/// `git@host:path`, a path) is returned as is: it has no password field to hide.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return redact_userinfo(url);
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have credentials, which then have no password.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        parsed
            .query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), "***")));
    }
    let shown = parsed.to_string();
    // `Url` adds a `/` to an empty path; show the URL as it was written.
    match shown.strip_suffix('/') {
        Some(s) if !url.ends_with('/') && parsed.path() == "/" && parsed.query().is_none() => {
            s.to_owned()
        }
        _ => shown,
    }
}

/// The textual fallback for text `Url` refuses: hides what follows the first `:` of the
/// user information before the last `@` of the authority.
fn redact_userinfo(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let rest = &text[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return text.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!("{}:***{}", &text[..start + colon], &rest[at..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_query_values_are_hidden() {
        assert_eq!(
            redact_url("https://me:s3cret@h.example/x.git"),
            "https://me:***@h.example/x.git"
        );
        assert_eq!(
            redact_url("mongodb://u:p%40ss@db:27017/x?authSource=admin"),
            "mongodb://u:***@db:27017/x?authSource=***"
        );
        assert_eq!(redact_url("http://127.0.0.1:7878"), "http://127.0.0.1:7878");
        assert_eq!(redact_url("http://h/sync/"), "http://h/sync/");
        assert_eq!(redact_url("git@host:me/tasks.git"), "git@host:me/tasks.git");
        assert_eq!(redact_url("not a url"), "not a url");
        assert!(!redact_url("http://h/?token=abc").contains("abc"));
        assert_eq!(
            redact_url("ht tp://u:secret@example.org/t.git"),
            "ht tp://u:***@example.org/t.git"
        );
        assert_eq!(
            redact_url("mongodb+srv://u:p@ss@c.example/db"),
            "mongodb+srv://u:***@c.example/db"
        );
        assert_eq!(
            redact_url("mongodb://h1,h2/?replicaSet=r"),
            "mongodb://h1,h2/?replicaSet=***"
        );
        assert_eq!(redact_url("mongodb://user@h"), "mongodb://user@h");
    }
}
