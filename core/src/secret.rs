//! A secret from the config (a token, a password): kept as given, never shown.

use std::fmt;

/// A secret string. `Debug` prints `<redacted>`, so a config struct holding one can derive
/// `Debug` and still be logged; read the value with [`Secret::expose`] only where it is sent or
/// checked. It has no `Display` and no `Serialize`, so it cannot end up in a message or a file
/// by accident.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the code that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (an unset value from the environment).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Config {
            token: Option<Secret>,
        }
        let shown = format!(
            "{:?}",
            Config {
                token: Some(Secret::new("s3cret"))
            }
        );
        assert_eq!(shown, "Config { token: Some(<redacted>) }");
        let parsed: Secret = serde_json::from_str("\"s3cret\"").unwrap();
        assert_eq!(parsed.expose(), "s3cret");
    }
}
