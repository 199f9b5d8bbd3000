//! The client's transport: one reqwest client, the token in both `Authorization` schemes,
//! retries with core's backoff, a redirect policy that keeps task bodies at their origin, and
//! answers read with a size cap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hypertask_core::{Backoff, DriverError, ErrorKind};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{redirect, StatusCode, Url};

use crate::config::HttpConfig;
use crate::error::{is_retryable_status, is_retryable_transport, Origin};

/// How much of an error answer (any status but 2xx) is read: enough for its message.
const ERROR_BODY_BYTES: usize = 64 * 1024;
/// Most redirects followed within the server's origin.
const MAX_REDIRECTS: usize = 5;

/// One answer: its status, headers and (capped) body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// Sends requests to one server and reads their answers.
pub(crate) struct Transport {
    pub(crate) origin: Origin,
    base: Url,
    client: reqwest::Client,
    /// `Authorization` values: `Bearer <token>`, then the original `hypertask <token>`.
    auth: Option<[HeaderValue; 2]>,
    /// Whether the server refused the `Bearer` scheme and accepted the original one.
    legacy_auth: AtomicBool,
    pub(crate) retries: u32,
}

impl Transport {
    /// The transport of driver instance `name`; checks the URL, token and timeouts.
    pub(crate) fn new(name: &str, config: &HttpConfig) -> Result<Transport, DriverError> {
        let cfg_err = |msg: String| DriverError::new(name, ErrorKind::Config, msg);
        let mut base = config.base_url().map_err(cfg_err)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let timeout = config.timeout().map_err(cfg_err)?;
        let connect_timeout = config.connect_timeout().map_err(cfg_err)?;
        let retries = config.retries().map_err(cfg_err)?;
        let header = |scheme: &str, t: &str| {
            let mut v = HeaderValue::from_str(&format!("{scheme} {t}")).map_err(|_| {
                cfg_err("`token` holds characters that cannot be sent in a header".into())
            })?;
            v.set_sensitive(true);
            Ok::<_, DriverError>(v)
        };
        let auth = config
            .token()
            .map_err(cfg_err)?
            .map(|t| Ok::<_, DriverError>([header("Bearer", t)?, header("hypertask", t)?]))
            .transpose()?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .redirect(same_origin_redirects(base.clone()))
            .user_agent(concat!("hypertask/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| cfg_err(format!("cannot build the HTTP client: {e}")))?;
        Ok(Transport {
            origin: Origin {
                name: name.to_owned(),
                url: hypertask_core::redact_url(base.as_str().trim_end_matches('/')),
                timeout,
                has_token: auth.is_some(),
            },
            base,
            client,
            auth,
            legacy_auth: AtomicBool::new(false),
            retries,
        })
    }

    /// The URL of `path` (relative, e.g. `hashes` or `task/<id>`) under the base URL.
    pub(crate) fn endpoint(&self, path: &str) -> Url {
        // `base` ends with '/', and `path` is relative (task ids are URL-safe).
        self.base.join(path).expect("endpoint paths are relative")
    }

    /// The reqwest client, to build requests with.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request built by `build` (once per attempt) and reads the answer, at most
    /// `limit` bytes of a successful one; retries failures a retry can help with. A final
    /// retryable status is returned as is.
    pub(crate) async fn send(
        &self,
        what: &str,
        limit: usize,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, DriverError> {
        self.exchange(what, Some(limit), build).await
    }

    /// [`Transport::send`] for a caller that needs only the status and headers of a
    /// successful answer: its body is not read (the connection is closed instead), and the
    /// answer's `body` is empty.
    pub(crate) async fn send_unread(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, DriverError> {
        self.exchange(what, None, build).await
    }

    /// Sends with retries; `limit` caps a successful answer's body, `None` leaves it unread.
    async fn exchange(
        &self,
        what: &str,
        limit: Option<usize>,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, DriverError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut attempt = 0;
        let mut tried_legacy = false;
        loop {
            let mut req = build();
            let legacy = self.legacy_auth.load(Ordering::Relaxed);
            if let Some(auth) = &self.auth {
                req = req.header(AUTHORIZATION, auth[usize::from(legacy)].clone());
            }
            let outcome = match req.send().await {
                Ok(resp) => self.read(what, resp, limit).await?,
                Err(e) => Err(e),
            };
            if let Ok(Answer {
                status: StatusCode::UNAUTHORIZED,
                ..
            }) = &outcome
            {
                if self.auth.is_some() && !legacy && !tried_legacy {
                    // A v1.0 server may know only `Authorization: hypertask <token>`.
                    tried_legacy = true;
                    self.legacy_auth.store(true, Ordering::Relaxed);
                    continue;
                }
                if legacy && tried_legacy {
                    // Neither scheme was accepted: the token is wrong, not the scheme.
                    self.legacy_auth.store(false, Ordering::Relaxed);
                }
            }
            let retry = match &outcome {
                Ok(answer) => is_retryable_status(answer.status),
                Err(e) => is_retryable_transport(e),
            };
            if !retry || attempt >= self.retries {
                return outcome.map_err(|e| self.origin.transport(what, e));
            }
            match &outcome {
                Ok(answer) => {
                    tracing::debug!(driver = %self.origin.name, %what, status = %answer.status, attempt, "retrying")
                }
                Err(e) => {
                    tracing::debug!(driver = %self.origin.name, %what, error = %e, attempt, "retrying")
                }
            }
            attempt += 1;
            backoff.wait().await;
        }
    }

    /// Reads an answer's body chunk by chunk: a successful answer larger than `limit` is an
    /// error (the outer one: it fails this exchange), and with no `limit` it is not read; an
    /// error answer is cut at [`ERROR_BODY_BYTES`]. The inner error is a transport failure
    /// while reading.
    async fn read(
        &self,
        what: &str,
        mut resp: reqwest::Response,
        limit: Option<usize>,
    ) -> Result<Result<Answer, reqwest::Error>, DriverError> {
        let status = resp.status();
        let headers = resp.headers().clone();
        let success = status.is_success();
        let Some(limit) = limit.or((!success).then_some(ERROR_BODY_BYTES)) else {
            return Ok(Ok(Answer {
                status,
                headers,
                body: Vec::new(),
            }));
        };
        let cap = if success {
            limit
        } else {
            limit.min(ERROR_BODY_BYTES)
        };
        if success && resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(self.too_large(what, cap));
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = cap - body.len();
                    if chunk.len() > room {
                        if success {
                            return Err(self.too_large(what, cap));
                        }
                        body.extend_from_slice(&chunk[..room]);
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(Answer {
            status,
            headers,
            body,
        }))
    }

    fn too_large(&self, what: &str, cap: usize) -> DriverError {
        self.origin.error(
            ErrorKind::Protocol,
            format!(
                "the server at {} answered {what} with more than {cap} bytes; the answer was refused",
                self.origin.url
            ),
        )
    }
}

/// Follows redirects only within `base`'s origin (scheme, host and port): a request body,
/// which holds tasks, never leaves the server the user configured. Any other redirect is
/// returned as the answer, and reported as such.
fn same_origin_redirects(base: Url) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.stop()
        } else if attempt.url().origin() == base.origin() {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}
