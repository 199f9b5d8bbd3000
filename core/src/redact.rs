//! The one URL redactor: what a URL looks like in messages, logs and `Debug` output.

use url::Url;

/// `url` with any password and every query value replaced by `***`, for messages and logs.
/// Text that does not parse as a URL (an scp-like `git@host:path`, a path) is returned as is:
/// it has no password field to hide.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.to_owned();
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
    }
}
