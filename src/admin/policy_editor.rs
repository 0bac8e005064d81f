//! The admin API behind the dashboard's policy editor: read a script's source, check a draft,
//! run the fixtures against it, and save or delete a script (then reload, as an edit on disk
//! would). Drafts are compiled with the loaded set's own engine, so a draft that checks here
//! is one a reload accepts. `--read-only-policies` refuses the writes.

use crate::error::{ApiError, Code};
use crate::http::callers::AdminCaller;
use crate::policy::coverage::ScriptCoverage;
use crate::policy::draft::check_name;
use crate::policy::fixtures::{self, CaseResult};
use crate::policy::{LoadError, PolicySet};
use crate::proxy::body;
use crate::reload::{Attempt, Outcome};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/admin/policies/validate").route(web::post().to(validate)))
        .service(crate::http::resource("/admin/policies/test").route(web::post().to(test)))
        .service(
            crate::http::resource("/admin/policies/{name}/source").route(web::get().to(source)),
        )
        // Registered after the fixed paths above (and `/admin/policies/simulate`), which are
        // never script names anyway: those end in `.rhai`.
        .service(
            crate::http::resource("/admin/policies/{name}")
                .route(web::put().to(save))
                .route(web::delete().to(delete)),
        );
}

/// A script's text that is not saved: it replaces the loaded script of that name, or is added
/// when no script has it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "10-aliases.rhai", "source": "fn on_request(req, ctx) {\n  ctx.route([\"mock/echo\"]);\n}\n"}))]
pub struct Draft {
    /// The script's file name in the policies folder (`*.rhai`, no folders).
    pub name: String,
    pub source: String,
}

/// A script's text as loaded.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "10-aliases.rhai", "source": "fn on_request(req, ctx) {}\n"}))]
pub struct PolicySource {
    pub name: String,
    pub source: String,
}

/// A problem in a draft, where it is.
#[derive(Serialize, ToSchema)]
pub struct DraftError {
    /// 1-based; `null` when the problem is the whole script (it defines no hook).
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl From<&LoadError> for DraftError {
    fn from(e: &LoadError) -> Self {
        DraftError {
            line: e.line,
            column: e.column,
            message: e.message.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"valid": false, "errors": [{"line": 2, "column": 7, "message": "Expecting name of a variable"}]}))]
pub struct Validation {
    /// Whether a reload would compile this draft.
    pub valid: bool,
    pub errors: Vec<DraftError>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// Run the fixtures with this draft in place of (or added to) the loaded scripts.
    draft: Option<Draft>,
}

/// The fixtures in `policies/tests/*.yaml`, run as `switchboard policy test` runs them.
#[derive(Serialize, ToSchema)]
pub struct TestReport {
    pub passed: usize,
    pub failed: usize,
    pub cases: Vec<CaseResult>,
    /// Which lines of each script (the draft included) the cases executed.
    pub coverage: Vec<ScriptCoverage>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    /// The script's new text.
    source: String,
}

/// A script written or deleted, and the reload that followed.
#[derive(Serialize, ToSchema)]
pub struct PolicyWrite {
    pub name: String,
    /// Whether the running gateway now uses the folder as written: `false` when the reload
    /// rolled back (another file is invalid; `reload.errors` says which), in which case the
    /// file is written but the previous configuration keeps serving.
    pub applied: bool,
    pub message: String,
    pub reload: Attempt,
}

/// `name` as a script name, or the 400 saying why not.
fn script_name(name: &str) -> Result<(), ApiError> {
    check_name(name).map_err(|why| ApiError::bad_request(why.to_string()).with_param("name"))
}

/// The 400 of a draft that does not compile.
fn invalid(name: &str, e: &LoadError) -> ApiError {
    let at = match (e.line, e.column) {
        (Some(line), Some(col)) => format!(" at line {line}, column {col}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    };
    ApiError::bad_request(format!("`{name}`{at}: {}", e.message))
        .with_code(Code::InvalidPolicy)
        .with_param("source")
}

/// The loaded policies with `draft` swapped in (or as loaded, without one).
pub(crate) fn with_draft(
    state: &AppState,
    loaded: &PolicySet,
    draft: Option<&Draft>,
) -> Result<Option<PolicySet>, ApiError> {
    let Some(draft) = draft else {
        return Ok(None);
    };
    script_name(&draft.name).map_err(|e| e.with_param("draft.name"))?;
    loaded
        .with_draft(
            state.reloader.policies_dir(),
            &draft.name,
            Some(&draft.source),
        )
        .map(Some)
        .map_err(|e| invalid(&draft.name, &e).with_param("draft.source"))
}

fn writable(state: &AppState) -> Result<(), ApiError> {
    if state.read_only_policies {
        return Err(ApiError::forbidden(
            "policy scripts are read-only here (--read-only-policies): edit the files in the \
             policies folder instead",
        )
        .with_code(Code::PoliciesReadOnly));
    }
    Ok(())
}

/// The text a loaded script was compiled from.
#[utoipa::path(
    get,
    path = "/admin/policies/{name}/source",
    operation_id = "getPolicySource",
    tag = "policies",
    params(("name" = String, Path, description = "The script's file name, e.g. `10-aliases.rhai`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The script's text", body = PolicySource),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        (status = 404, description = "No loaded script of that name", body = crate::error::ErrorResponse),
    )
)]
async fn source(
    _admin: AdminCaller,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    script_name(&name)?;
    let text = state
        .snapshot()
        .policies
        .source(&name)
        .ok_or_else(|| ApiError::not_found(format!("no loaded policy script `{name}`")))?;
    Ok(HttpResponse::Ok().json(PolicySource {
        name,
        source: text.to_string(),
    }))
}

/// Compiles a draft as a reload would (same engine, same limits, same checks) and says where
/// it is wrong. Nothing is written or changed.
#[utoipa::path(
    post,
    path = "/admin/policies/validate",
    operation_id = "validatePolicy",
    tag = "policies",
    request_body(content = Draft),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Whether the draft compiles, and its errors with line and column", body = Validation),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::TooLarge,
    )
)]
async fn validate(
    _admin: AdminCaller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let draft: Draft = body::parse_json(&bytes)?;
    script_name(&draft.name)?;
    let snapshot = state.snapshot();
    let errors = match snapshot.policies.with_draft(
        state.reloader.policies_dir(),
        &draft.name,
        Some(&draft.source),
    ) {
        Ok(_) => vec![],
        Err(e) => vec![DraftError::from(&e)],
    };
    Ok(HttpResponse::Ok().json(Validation {
        valid: errors.is_empty(),
        errors,
    }))
}

/// Runs the fixtures in `policies/tests/*.yaml` against the loaded scripts, or with a draft
/// swapped in. Counters and assignments are in memory, fresh for the run: nothing is written.
#[utoipa::path(
    post,
    path = "/admin/policies/test",
    operation_id = "testPolicies",
    tag = "policies",
    request_body(content = TestRequest),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Each fixture case, passed or not, with what differed", body = TestReport),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        crate::openapi::responses::TooLarge,
        (status = 422, description = "A fixture file cannot be read or parsed", body = crate::error::ErrorResponse),
    )
)]
async fn test(
    _admin: AdminCaller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let input: TestRequest = if bytes.is_empty() {
        TestRequest { draft: None }
    } else {
        body::parse_json(&bytes)?
    };
    let snapshot = state.snapshot();
    let policies = match with_draft(&state, &snapshot.policies, input.draft.as_ref())? {
        Some(set) => Arc::new(set),
        None => Arc::new(snapshot.policies.detached()),
    };
    let tests_dir = state.reloader.policies_dir().join("tests");
    let body_limit = state.body_limit;
    // Every case runs scripts under their time budget: off the async workers.
    let report = web::block(move || {
        if !tests_dir.is_dir() {
            return Ok(TestReport {
                passed: 0,
                failed: 0,
                cases: vec![],
                coverage: vec![],
            });
        }
        fixtures::run_covered(&policies, &tests_dir, body_limit).map(|r| TestReport {
            passed: r.passed,
            failed: r.failed,
            cases: r.cases,
            coverage: r.coverage,
        })
    })
    .await
    .map_err(|_| ApiError::internal("the fixture run was interrupted"))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            format!("cannot run the fixtures: {e}"),
        )
    })?;
    Ok(HttpResponse::Ok().json(report))
}

/// Writes a script (a new name creates it) after checking it compiles, then reloads. A draft
/// that does not compile writes nothing.
#[utoipa::path(
    put,
    path = "/admin/policies/{name}",
    operation_id = "savePolicy",
    tag = "policies",
    params(("name" = String, Path, description = "The script's file name, e.g. `10-aliases.rhai`")),
    request_body(content = SaveRequest),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Written, and the reload that followed (`applied: false` if it rolled back)", body = PolicyWrite),
        (status = 400, description = "Not a script name, or the script does not compile (`code: invalid_policy`, with its line); nothing was written", body = crate::error::ErrorResponse),
        crate::openapi::responses::AdminRequired,
        (status = 403, description = "`--read-only-policies` (`code: policies_read_only`)", body = crate::error::ErrorResponse),
        crate::openapi::responses::TooLarge,
        (status = 500, description = "The file could not be written", body = crate::error::ErrorResponse),
    )
)]
async fn save(
    _admin: AdminCaller,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    writable(&state)?;
    let name = name.into_inner();
    script_name(&name)?;
    let bytes = body::read_limited(&req, payload, state.body_limit).await?;
    let input: SaveRequest = body::parse_json(&bytes)?;
    let dir = state.reloader.policies_dir().to_path_buf();
    state
        .snapshot()
        .policies
        .with_draft(&dir, &name, Some(&input.source))
        .map_err(|e| invalid(&name, &e))?;
    let file = name.clone();
    web::block(move || crate::durable_file::write(&dir, &file, input.source.as_bytes()))
        .await
        .map_err(|_| ApiError::internal("the write was interrupted"))?
        .map_err(|e| {
            tracing::error!(script = %name, error = %e, "cannot write a policy script");
            ApiError::internal("cannot write the policy file; see the gateway log")
        })?;
    tracing::info!(script = %name, "policy script written from the admin API");
    reload_after(&state, name, "saved").await
}

/// Deletes a script, then reloads.
#[utoipa::path(
    delete,
    path = "/admin/policies/{name}",
    operation_id = "deletePolicy",
    tag = "policies",
    params(("name" = String, Path, description = "The script's file name, e.g. `10-aliases.rhai`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted, and the reload that followed (`applied: false` if it rolled back)", body = PolicyWrite),
        crate::openapi::responses::BadRequest,
        crate::openapi::responses::AdminRequired,
        (status = 403, description = "`--read-only-policies` (`code: policies_read_only`)", body = crate::error::ErrorResponse),
        (status = 404, description = "No script of that name in the policies folder", body = crate::error::ErrorResponse),
        (status = 500, description = "The file could not be removed", body = crate::error::ErrorResponse),
    )
)]
async fn delete(
    _admin: AdminCaller,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    writable(&state)?;
    let name = name.into_inner();
    script_name(&name)?;
    let dir = state.reloader.policies_dir().to_path_buf();
    let file = name.clone();
    let removed = web::block(move || crate::durable_file::remove(&dir, &file))
        .await
        .map_err(|_| ApiError::internal("the removal was interrupted"))?
        .map_err(|e| {
            tracing::error!(script = %name, error = %e, "cannot remove a policy script");
            ApiError::internal("cannot remove the policy file; see the gateway log")
        })?;
    if !removed {
        return Err(ApiError::not_found(format!(
            "no policy script `{name}` in the policies folder"
        )));
    }
    tracing::info!(script = %name, "policy script deleted from the admin API");
    reload_after(&state, name, "deleted").await
}

/// Reloads after a write (forced: the watcher may have reloaded already, and the answer must
/// say what is serving now).
async fn reload_after(
    state: &AppState,
    name: String,
    done: &str,
) -> Result<HttpResponse, ApiError> {
    let reloader = state.reloader.clone();
    let reload = web::block(move || reloader.reload("admin", true))
        .await
        .map_err(|_| {
            ApiError::internal(format!(
                "`{name}` was {done}, but the reload was interrupted; POST /admin/reload"
            ))
        })?;
    let applied = reload.outcome != Outcome::RolledBack;
    let message = if applied {
        format!("`{name}` {done}; the gateway reloaded")
    } else {
        format!(
            "`{name}` {done}, but the reload rolled back (see `reload.errors`): the previous \
             configuration keeps serving until the folder is valid"
        )
    };
    Ok(HttpResponse::Ok().json(PolicyWrite {
        name,
        applied,
        message,
        reload,
    }))
}
