//! Several users on one server (`[server.users.NAME]`): each user has a credential and a
//! store of their own (a namespace of the configured store, see
//! `hypertask_core::Registry::register_namespaced`), and every request is answered by the
//! store of the user whose token it presents.
//!
//! A request is authenticated before anything else and then handed, whole, to that user's
//! protocol endpoints, which know no other store: no endpoint of protocol 1.0 or its
//! extensions can read, list, write or detect another user's tasks, because nothing of
//! another user is within its reach. The request and body budgets are shared by all users;
//! the request rate, the task cap and the long-poll slots are counted per user.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hypertask_core::{valid_namespace, ContentHash, Driver, Secret};
use tokio::sync::watch;
use tower::Service;

use super::auth::{digest_of, presented_digest, same_digest, unauthorized};
use super::{api, log_request, web, Budgets, ServerOptions};

/// One user of a several-user server.
pub struct User {
    /// The user's name: 1 to 32 characters of `a-z 0-9 _ -` (it names their namespace).
    pub name: String,
    /// How the user proves who they are.
    pub credential: Credential,
    /// The user's own store, holding nobody else's tasks.
    pub store: Arc<dyn Driver>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("credential", &self.credential)
            .field("store", &self.store.info().name)
            .finish()
    }
}

/// How a user signs in: a bearer token, given as itself or as its SHA-256.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The token (`token = "…"`).
    Token(Secret),
    /// The lowercase hex SHA-256 of the token (`token_sha256 = "…"`), so the config need
    /// not hold the secret: `printf %s TOKEN | sha256sum`.
    Sha256(ContentHash),
}

impl Credential {
    fn digest(&self) -> ContentHash {
        match self {
            Credential::Token(t) => digest_of(t.expose()),
            Credential::Sha256(d) => d.clone(),
        }
    }
}

/// One user's endpoints, reached once their token matched.
struct Account {
    digest: ContentHash,
    endpoints: Router,
}

/// The routes of a server for `users`: each request is answered from the store of the user
/// whose token it presents (`401` when it matches none), plus the web client. Refuses no
/// users, an invalid name, a name twice and one token for two users.
pub fn users_router(users: Vec<User>, opts: ServerOptions) -> Result<Router, String> {
    users_app(users, opts, None)
}

/// [`users_router`], releasing held long polls when `stop` becomes `true`.
pub(super) fn users_app(
    users: Vec<User>,
    opts: ServerOptions,
    stop: Option<watch::Receiver<bool>>,
) -> Result<Router, String> {
    if users.is_empty() {
        return Err("a server for several users needs at least one user".into());
    }
    if opts.token.is_some() {
        return Err("set either a token for the whole server or one per user, not both".into());
    }
    let mut names = BTreeSet::new();
    let mut digests = BTreeSet::new();
    for u in &users {
        valid_namespace(&u.name).map_err(|why| format!("user '{}': {why}", u.name))?;
        if !names.insert(u.name.clone()) {
            return Err(format!("user '{}' is configured twice", u.name));
        }
        if !digests.insert(u.credential.digest()) {
            return Err(format!(
                "user '{}' has the same token as another user; give each user their own",
                u.name
            ));
        }
    }
    let budgets = Budgets::new(&opts);
    let accounts: Vec<Account> = users
        .into_iter()
        .map(|u| Account {
            digest: u.credential.digest(),
            // Authenticated here, before the request reaches them.
            endpoints: api(u.store, None, opts.clone(), &budgets, stop.clone()),
        })
        .collect();
    let routes = Router::new()
        .fallback(dispatch)
        .with_state(Arc::new(accounts))
        .merge(web::routes())
        .layer(middleware::from_fn(log_request));
    Ok(web::with_cors(routes, &opts))
}

/// Hands the request to the account whose token it presents. Every account's digest is
/// compared, in constant time, so the time taken says nothing about which one matched.
async fn dispatch(State(accounts): State<Arc<Vec<Account>>>, req: Request) -> Response {
    let digest = match presented_digest(req.headers()) {
        Ok(d) => d,
        Err(why) => return unauthorized(why),
    };
    let mut found = None;
    for account in accounts.iter() {
        if same_digest(&account.digest, &digest) {
            found = Some(account);
        }
    }
    let Some(account) = found else {
        return unauthorized("wrong token");
    };
    let mut endpoints = account.endpoints.clone();
    let answer: Result<Response, Infallible> = endpoints.call(req).await;
    match answer {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
    .into_response()
}
