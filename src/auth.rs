//! Who is calling: a bearer key resolved to its key record (or the environment's admin key).
//! The actix extractors built on this are in `http::callers`.

use crate::error::ApiError;
use crate::error_codes::Code;
use crate::store::keys::{hash_secret, now_secs};
use crate::store::{KeyRecord, KeyStore, Role};
use actix_web::http::header::AUTHORIZATION;
use actix_web::HttpRequest;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Authenticator {
    keys: Arc<dyn KeyStore>,
    /// `SWITCHBOARD_ADMIN_KEY`, hashed, with the record it stands for.
    env_admin: Option<([u8; 32], Arc<KeyRecord>)>,
    /// `--metrics-token`, hashed: it reads `/metrics` and nothing else.
    metrics_token: Option<[u8; 32]>,
}

impl Authenticator {
    pub fn new(keys: Arc<dyn KeyStore>, env_admin_key: Option<&str>) -> Self {
        let env_admin = env_admin_key.filter(|k| !k.is_empty()).map(|secret| {
            let record = KeyRecord {
                id: "env-admin".into(),
                name: "SWITCHBOARD_ADMIN_KEY".into(),
                role: Role::Admin,
                masked: "(from the environment)".into(),
                created_at: now_secs(),
                models: vec![],
                tags: BTreeMap::new(),
                revoked_at: None,
                expires_at: None,
                metadata: Default::default(),
                limits: Default::default(),
                team: None,
            };
            (hash_secret(secret), Arc::new(record))
        });
        Authenticator {
            keys,
            env_admin,
            metrics_token: None,
        }
    }

    /// Accepts `token` (if any and not empty) as a bearer that reads `/metrics` only.
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Self {
        self.metrics_token = token.filter(|t| !t.is_empty()).map(hash_secret);
        self
    }

    /// Whether the request carries the metrics token. The hashes are compared in constant
    /// time, so how long the answer takes says nothing about how close a guess was.
    pub fn is_metrics_token(&self, req: &HttpRequest) -> bool {
        use subtle::ConstantTimeEq;
        match (&self.metrics_token, bearer(req)) {
            (Some(hash), Ok(secret)) => bool::from(hash_secret(secret).ct_eq(hash)),
            _ => false,
        }
    }

    pub fn has_env_admin(&self) -> bool {
        self.env_admin.is_some()
    }

    /// The key with this id as it stands now (a batch runs as its key): `None` when it is
    /// unknown, revoked or expired.
    pub async fn record_by_id(
        &self,
        id: &str,
    ) -> Result<Option<Arc<KeyRecord>>, crate::store::StoreError> {
        if let Some((_, record)) = self.env_admin.as_ref().filter(|(_, r)| r.id == id) {
            return Ok(Some(record.clone()));
        }
        let Some(key) = self.keys.find(id).await? else {
            return Ok(None);
        };
        let live = key.revoked_at.is_none() && key.expires_at.is_none_or(|at| at > now_secs());
        Ok(live.then(|| Arc::new(key)))
    }

    /// Resolves the request's bearer key.
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Arc<KeyRecord>, ApiError> {
        // Hashed once, for the environment's admin key and the store's index alike.
        let hash = hash_secret(bearer(req)?);
        if let Some((admin, record)) = &self.env_admin {
            if hash == *admin {
                return Ok(record.clone());
            }
        }
        let key = self.keys.authenticate_hash(&hash).ok_or_else(|| {
            ApiError::unauthorized(
                "Invalid API key. Check the key, or ask an operator for a new one.",
            )
        })?;
        if key.expires_at.is_some_and(|at| at <= now_secs()) {
            return Err(
                ApiError::unauthorized("This API key has expired.").with_code(Code::ExpiredApiKey)
            );
        }
        Ok(key)
    }
}

/// The key a request carries: `Authorization: Bearer KEY`, or `x-api-key: KEY` as Anthropic's
/// clients send it (used only when there is no `Authorization` header).
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let Some(header) = req.headers().get(AUTHORIZATION) else {
        return api_key_header(req);
    };
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("The Authorization header is not valid text."))?;
    let (scheme, secret) = value.trim().split_once(' ').ok_or_else(|| {
        ApiError::unauthorized("Malformed Authorization header. Use `Authorization: Bearer <key>`.")
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || secret.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "Malformed Authorization header. Use `Authorization: Bearer <key>`.",
        ));
    }
    Ok(secret.trim())
}

fn api_key_header(req: &HttpRequest) -> Result<&str, ApiError> {
    let header = req.headers().get("x-api-key").ok_or_else(|| {
        ApiError::unauthorized(
            "Missing API key. Send it as `Authorization: Bearer <key>` (or `x-api-key: <key>`).",
        )
    })?;
    let secret = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("The x-api-key header is not valid text."))?
        .trim();
    if secret.is_empty() {
        return Err(ApiError::unauthorized("The x-api-key header is empty."));
    }
    Ok(secret)
}
