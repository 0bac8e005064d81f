//! CORS: which web pages on other origins may call the gateway from a browser.
//!
//! Off unless origins are configured. When on, `actix-cors` wraps the whole app (outermost), so
//! a preflight `OPTIONS` is answered there, without a key and without reaching the pipeline,
//! and every answer to an allowed origin (errors included) carries the CORS headers a page
//! needs to read it. A request from an origin not allowed is served as it would be without
//! CORS, only without those headers: the browser then keeps the answer from the page, and
//! clients that are not browsers (which send no `Origin`, or any) keep working.
//!
//! The settings are checked here, at start and on each reload, with errors that name the bad
//! value: `actix-cors` would otherwise only log its own error and leave every worker unable to
//! serve.
//!
//! CORS can change while serving (a reload of the settings file): [`ReloadableCors`] holds the
//! policy in a [`CorsSwitch`] and each worker rebuilds its `actix-cors` middleware when the
//! policy it built from is no longer the current one. A request costs one atomic load and a
//! pointer comparison for this.

use actix_cors::{Cors, CorsMiddleware};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::HeaderName;
use actix_web::http::{Method, Uri};
use arc_swap::ArcSwap;
use futures_util::future::{FutureExt, LocalBoxFuture};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// CORS as configured (flags or `SWITCHBOARD_CORS_*`); checked by [`CorsPolicy::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`), or `*` for any origin.
    pub origins: Vec<String>,
    /// Methods a page may use.
    pub methods: Vec<String>,
    /// Request headers a page may send; `*` allows whichever the preflight asks for.
    pub headers: Vec<String>,
    /// Response headers a page may read besides the always-readable ones.
    pub expose_headers: Vec<String>,
    /// Let pages send credentials (cookies, HTTP auth); refused together with origin `*`.
    pub credentials: bool,
    /// How long a browser may cache a preflight answer, in seconds.
    pub max_age_secs: usize,
}

impl CorsSettings {
    /// Every method the API has.
    pub const DEFAULT_METHODS: &'static [&'static str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];
    /// Any header: the OpenAI and Anthropic SDKs send many of their own (`x-stainless-*`,
    /// `anthropic-version`, ...), and the key is a bearer token, not a cookie, so allowing them
    /// gives a page nothing it could not already send.
    pub const DEFAULT_HEADERS: &'static [&'static str] = &["*"];
    /// The headers the gateway adds that a page may want: which provider and model answered,
    /// the cache, the variant, attempts, the request id, and the rate-limit headers.
    pub const DEFAULT_EXPOSE_HEADERS: &'static [&'static str] = &[
        "x-request-id",
        "x-switchboard-provider",
        "x-switchboard-model",
        "x-switchboard-cache",
        "x-switchboard-variant",
        "x-switchboard-attempts",
        "x-switchboard-dropped-params",
        "x-switchboard-token-count",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        "retry-after",
    ];
    pub const DEFAULT_MAX_AGE_SECS: usize = 600;

    /// The defaults for these origins.
    pub fn for_origins<S: Into<String>>(origins: impl IntoIterator<Item = S>) -> Self {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        CorsSettings {
            origins: origins.into_iter().map(Into::into).collect(),
            methods: owned(Self::DEFAULT_METHODS),
            headers: owned(Self::DEFAULT_HEADERS),
            expose_headers: owned(Self::DEFAULT_EXPOSE_HEADERS),
            credentials: false,
            max_age_secs: Self::DEFAULT_MAX_AGE_SECS,
        }
    }
}

/// Why the CORS settings cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorsError {
    #[error("CORS: origin `*` cannot be combined with credentials (browsers refuse it); list the origins that may send credentials")]
    WildcardWithCredentials,
    #[error("CORS: `{0}` is not an origin; write it as scheme://host[:port], e.g. https://app.example.com, with no path or trailing slash")]
    Origin(String),
    #[error("CORS: `{0}` is not an HTTP method")]
    Method(String),
    #[error("CORS: `{0}` is not a header name")]
    Header(String),
    #[error("CORS: no origin given")]
    NoOrigin,
}

#[derive(Clone, Debug)]
enum Origins {
    Any,
    Exact(Vec<String>),
}

/// Checked CORS settings, from which each worker builds its middleware.
#[derive(Clone, Debug)]
pub struct CorsPolicy {
    origins: Origins,
    methods: Vec<Method>,
    /// `None`: any header.
    headers: Option<Vec<HeaderName>>,
    expose: Vec<HeaderName>,
    credentials: bool,
    max_age_secs: usize,
}

impl CorsPolicy {
    pub fn new(settings: &CorsSettings) -> Result<CorsPolicy, CorsError> {
        let origins = if settings.origins.iter().any(|o| o.trim() == "*") {
            if settings.credentials {
                return Err(CorsError::WildcardWithCredentials);
            }
            Origins::Any
        } else if settings.origins.is_empty() {
            return Err(CorsError::NoOrigin);
        } else {
            Origins::Exact(
                settings
                    .origins
                    .iter()
                    .map(|o| origin(o.trim()))
                    .collect::<Result<_, _>>()?,
            )
        };
        let methods = settings
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                    .map_err(|_| CorsError::Method(m.clone()))
            })
            .collect::<Result<_, _>>()?;
        let headers = if settings.headers.iter().any(|h| h.trim() == "*") {
            None
        } else {
            Some(header_names(&settings.headers)?)
        };
        Ok(CorsPolicy {
            origins,
            methods,
            headers,
            expose: header_names(&settings.expose_headers)?,
            credentials: settings.credentials,
            max_age_secs: settings.max_age_secs,
        })
    }

    /// The middleware (one per worker: it is not `Send`).
    pub fn middleware(&self) -> Cors {
        let mut cors = Cors::default()
            .allowed_methods(self.methods.clone())
            .max_age(self.max_age_secs)
            .block_on_origin_mismatch(false);
        cors = match &self.origins {
            Origins::Any => cors.allow_any_origin().send_wildcard(),
            Origins::Exact(list) => list.iter().fold(cors, |c, o| c.allowed_origin(o)),
        };
        cors = match &self.headers {
            None => cors.allow_any_header(),
            Some(list) if list.is_empty() => cors,
            Some(list) => cors.allowed_headers(list.clone()),
        };
        if !self.expose.is_empty() {
            cors = cors.expose_headers(self.expose.clone());
        }
        if self.credentials {
            cors = cors.supports_credentials();
        }
        cors
    }
}

/// The CORS policy in force (`None`: off), shared by every worker and the reloader.
#[derive(Clone, Default)]
pub struct CorsSwitch(Arc<ArcSwap<Option<CorsPolicy>>>);

impl CorsSwitch {
    pub fn new(policy: Option<CorsPolicy>) -> Self {
        CorsSwitch(Arc::new(ArcSwap::from_pointee(policy)))
    }

    /// Applies to requests that arrive from now on.
    pub fn set(&self, policy: Option<CorsPolicy>) {
        self.0.store(Arc::new(policy));
    }
}

/// The CORS layer: `actix-cors` with the policy the [`CorsSwitch`] holds now.
pub struct ReloadableCors(pub CorsSwitch);

impl<S, B> Transform<S, ServiceRequest> for ReloadableCors
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type InitError = ();
    type Transform = ReloadableCorsService<S>;
    type Future = std::future::Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(ReloadableCorsService {
            inner: Rc::new(service),
            switch: self.0.clone(),
            built: RefCell::new(None),
        }))
    }
}

/// The inner service shared between the middlewares a worker builds over time.
pub struct Shared<S>(Rc<S>);

impl<S: Service<ServiceRequest>> Service<ServiceRequest> for Shared<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        self.0.call(req)
    }
}

/// The policy a worker's middleware was built from, and that middleware.
type Built<S> = (
    Arc<Option<CorsPolicy>>,
    Option<Rc<CorsMiddleware<Shared<S>>>>,
);

pub struct ReloadableCorsService<S> {
    inner: Rc<S>,
    switch: CorsSwitch,
    /// Per worker (`actix-cors`' middleware is not `Send`), rebuilt when the policy changes.
    built: RefCell<Option<Built<S>>>,
}

impl<S> ReloadableCorsService<S>
where
    S: Service<ServiceRequest, Error = actix_web::Error> + 'static,
{
    /// The middleware for the policy in force, building it if the policy changed.
    fn current<B>(&self) -> Option<Rc<CorsMiddleware<Shared<S>>>>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>>,
        S::Future: 'static,
        B: MessageBody + 'static,
    {
        let policy = self.switch.0.load();
        let mut built = self.built.borrow_mut();
        if let Some((from, middleware)) = built.as_ref() {
            if Arc::ptr_eq(from, &policy) {
                return middleware.clone();
            }
        }
        let from = arc_swap::Guard::into_inner(policy);
        let middleware = from.as_ref().as_ref().and_then(|p| {
            // `actix-cors` builds its middleware synchronously (a ready future); an error is
            // impossible for a checked policy, and would leave CORS off rather than fail.
            match p
                .middleware()
                .new_transform(Shared(self.inner.clone()))
                .now_or_never()
            {
                Some(Ok(m)) => Some(Rc::new(m)),
                _ => {
                    tracing::error!("the CORS policy could not be applied; CORS is off");
                    None
                }
            }
        });
        *built = Some((from, middleware.clone()));
        middleware
    }
}

impl<S, B> Service<ServiceRequest> for ReloadableCorsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        match self.current() {
            Some(cors) => cors.call(req),
            None => {
                let fut = self.inner.call(req);
                async move { fut.await.map(ServiceResponse::map_into_left_body) }.boxed_local()
            }
        }
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn origin(text: &str) -> Result<String, CorsError> {
    let bad = || CorsError::Origin(text.to_string());
    let uri: Uri = text.parse().map_err(|_| bad())?;
    let scheme_ok = uri.scheme_str().is_some();
    let authority_ok = uri.authority().is_some_and(|a| !a.as_str().contains('@'));
    // `Uri` reports an absent path as "/", so the text itself must not end with one.
    let bare = uri.path() == "/" && uri.query().is_none() && !text.ends_with('/');
    if scheme_ok && authority_ok && bare {
        Ok(text.to_string())
    } else {
        Err(bad())
    }
}

fn header_names(list: &[String]) -> Result<Vec<HeaderName>, CorsError> {
    list.iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .map(|h| HeaderName::from_bytes(h.as_bytes()).map_err(|_| CorsError::Header(h.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_with_credentials_is_refused() {
        let mut s = CorsSettings::for_origins(["*"]);
        s.credentials = true;
        assert_eq!(
            CorsPolicy::new(&s).err(),
            Some(CorsError::WildcardWithCredentials)
        );
        s.credentials = false;
        assert!(CorsPolicy::new(&s).is_ok());
    }

    #[test]
    fn origins_must_be_bare_scheme_host_port() {
        for ok in ["https://app.example.com", "http://localhost:5173"] {
            assert!(
                CorsPolicy::new(&CorsSettings::for_origins([ok])).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "not an origin",
        ] {
            assert_eq!(
                CorsPolicy::new(&CorsSettings::for_origins([bad])).err(),
                Some(CorsError::Origin(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_methods_and_headers_are_named() {
        let mut s = CorsSettings::for_origins(["https://a.example"]);
        s.methods = vec!["GE T".into()];
        assert_eq!(
            CorsPolicy::new(&s).err(),
            Some(CorsError::Method("GE T".into()))
        );
        let mut s = CorsSettings::for_origins(["https://a.example"]);
        s.expose_headers = vec!["x bad".into()];
        assert_eq!(
            CorsPolicy::new(&s).err(),
            Some(CorsError::Header("x bad".into()))
        );
    }

    #[test]
    fn no_origin_is_an_error() {
        assert_eq!(
            CorsPolicy::new(&CorsSettings::for_origins(Vec::<String>::new())).err(),
            Some(CorsError::NoOrigin)
        );
    }
}
