//! `/v1/files`: upload (`multipart/form-data`, `purpose: batch`), list, read, download and
//! delete files, in OpenAI's shapes. A file is its key's: another key gets 404. An upload is
//! streamed to a hidden file in the data folder, checked line by line as a batch input
//! (`batches::input`), and only then becomes a file; a bad line is a 400 naming it and leaves
//! nothing behind.

use super::body::no_calls;
use crate::batches::files::{self, FileMeta, PURPOSE_BATCH};
use crate::batches::multipart::{self, Multipart};
use crate::error::ApiError;
use crate::http::callers::Caller;
use crate::state::AppState;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

/// A file, as OpenAI shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileObject {
    pub id: String,
    /// Always `file`.
    pub object: &'static str,
    pub bytes: u64,
    /// Unix seconds.
    pub created_at: u64,
    pub filename: String,
    /// `batch` (uploaded input) or `batch_output` (a batch's output or error file).
    pub purpose: String,
    /// Always `processed`: a file exists only once it has been checked.
    pub status: &'static str,
    pub status_details: Option<String>,
    pub expires_at: Option<u64>,
}

impl From<FileMeta> for FileObject {
    fn from(m: FileMeta) -> Self {
        FileObject {
            id: m.id,
            object: "file",
            bytes: m.bytes,
            created_at: m.created_ms / 1000,
            filename: m.filename,
            purpose: m.purpose,
            status: "processed",
            status_details: None,
            expires_at: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<FileObject>,
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileDeleted {
    pub id: String,
    /// Always `file`.
    pub object: &'static str,
    pub deleted: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// Only files with this purpose.
    pub purpose: Option<String>,
    /// At most this many (1 to 10000; default 10000).
    pub limit: Option<usize>,
    /// The files after this id (a cursor: the last id of the previous page).
    pub after: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    pub order: Option<String>,
}

/// What an upload may carry besides its file: the other fields, part headers, delimiters.
const MAX_ENVELOPE: u64 = 64 * 1024;

/// The largest `purpose` field.
const MAX_FIELD: usize = 256;

/// Uploads a file (a batch's input).
#[utoipa::path(
    post,
    path = "/v1/files",
    operation_id = "createFile",
    tag = "files",
    request_body(content = crate::openapi::schemas::FileUpload, content_type = "multipart/form-data"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The file, checked and kept", body = FileObject),
        (status = 400, description = "Not multipart, no `file` or `purpose`, a purpose other than `batch`, or a bad line (the message names it)", body = crate::error::ErrorResponse),
        crate::openapi::responses::KeyRequired,
        (status = 413, description = "Larger than `--max-file-bytes`", body = crate::error::ErrorResponse),
        (status = 503, description = "The file could not be written (a full disk)", body = crate::error::ErrorResponse),
    )
)]
pub async fn create(
    req: HttpRequest,
    caller: Result<Caller, ApiError>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller.map_err(no_calls)?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multipart::boundary(content_type).map_err(|e| {
        ApiError::bad_request(format!("{e}: upload with `file` and `purpose` fields"))
    })?;
    let store = &state.batches.files;
    let temp = store.temp_path();
    // The whole body is bounded, not only the file: fields read past cost nothing unbounded.
    let body_max = store.max_bytes.saturating_add(MAX_ENVELOPE);
    let received = receive(
        Multipart::new(payload, &boundary, body_max),
        &temp,
        store.max_bytes,
    )
    .await;
    let upload = match received {
        Ok(upload) => upload,
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
    };
    let meta = FileMeta {
        id: files::new_id(),
        bytes: upload.bytes,
        created_ms: crate::clock::now_ms(),
        filename: upload.filename,
        purpose: upload.purpose,
        owner: caller.0.id.clone(),
        lines: 0,
    };
    let batches = state.batches.clone();
    let body_limit = batches.settings.body_limit;
    let kept = web::block(move || {
        let checked = crate::batches::input::index(&temp, body_limit, None);
        let result = match checked {
            Ok(lines) => {
                let meta = FileMeta {
                    lines: lines.len() as u64,
                    ..meta
                };
                batches.files.commit(&temp, meta.clone()).map(|()| Ok(meta))
            }
            Err(e) => Ok(Err(e)),
        };
        if !matches!(result, Ok(Ok(_))) {
            let _ = std::fs::remove_file(&temp);
        }
        result
    })
    .await
    .map_err(|e| ApiError::internal(format!("the upload could not be checked: {e}")))?;
    match kept {
        Ok(Ok(meta)) => Ok(HttpResponse::Ok().json(FileObject::from(meta))),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "The file is not a valid batch input: {e}"
        ))
        .with_param("file")),
        Err(e) => {
            tracing::error!(error = %e, "could not keep an uploaded file");
            Err(ApiError::storage_unavailable())
        }
    }
}

struct Upload {
    bytes: u64,
    filename: String,
    purpose: String,
}

/// Reads the form: `purpose` (must be `batch`) and `file`, streamed to `temp` within `max`.
async fn receive(
    mut form: Multipart<web::Payload>,
    temp: &std::path::Path,
    max: u64,
) -> Result<Upload, ApiError> {
    let bad = |e: multipart::MultipartError| match e {
        multipart::MultipartError::TooLarge(_) => too_large(max),
        e => ApiError::bad_request(e.to_string()),
    };
    let mut purpose = None;
    let mut file = None;
    while let Some(part) = form.next_part().await.map_err(bad)? {
        match (part.name.as_str(), part.filename) {
            ("purpose", _) => {
                purpose = Some(form.text(MAX_FIELD).await.map_err(bad)?.ok_or_else(|| {
                    ApiError::bad_request("`purpose` is not short text").with_param("purpose")
                })?);
            }
            ("file", filename) if file.is_none() => {
                let mut out = tokio::fs::File::create(temp).await.map_err(|e| {
                    tracing::error!(error = %e, "could not create an upload's file");
                    ApiError::storage_unavailable()
                })?;
                let mut bytes = 0u64;
                while let Some(chunk) = form.next_chunk().await.map_err(bad)? {
                    bytes += chunk.len() as u64;
                    if bytes > max {
                        return Err(too_large(max));
                    }
                    out.write_all(&chunk).await.map_err(|e| {
                        tracing::error!(error = %e, "could not write an upload");
                        ApiError::storage_unavailable()
                    })?;
                }
                out.flush()
                    .await
                    .map_err(|_| ApiError::storage_unavailable())?;
                file = Some((bytes, filename.unwrap_or_else(|| "upload.jsonl".into())));
            }
            // Other fields (OpenAI's `expires_after`, ...) are read past.
            _ => {}
        }
    }
    let purpose = purpose
        .ok_or_else(|| ApiError::bad_request("`purpose` is missing").with_param("purpose"))?;
    if purpose != PURPOSE_BATCH {
        return Err(ApiError::bad_request(format!(
            "`purpose` {purpose:?} is not accepted: only \"batch\" files can be uploaded"
        ))
        .with_param("purpose"));
    }
    let (bytes, filename) =
        file.ok_or_else(|| ApiError::bad_request("`file` is missing").with_param("file"))?;
    Ok(Upload {
        bytes,
        filename: crate::error::truncated(&filename, 256).into_owned(),
        purpose,
    })
}

fn too_large(max: u64) -> ApiError {
    let mut e = ApiError::payload_too_large(usize::try_from(max).unwrap_or(usize::MAX));
    e.message = format!("The file is larger than the limit of {max} bytes (`--max-file-bytes`).");
    e
}

fn missing(id: &str) -> ApiError {
    ApiError::not_found(format!("No such file: {id}")).with_param("file_id")
}

/// The file, if `owner` may see it (`None`: any owner, for the admin API), or 404 (another
/// key's file too: its existence is not told).
pub fn file_for(state: &AppState, id: &str, owner: Option<&str>) -> Result<FileMeta, ApiError> {
    if !files::is_id(id) {
        return Err(missing(id));
    }
    state
        .batches
        .files
        .get(id, owner)
        .ok_or_else(|| missing(id))
}

/// Lists the key's files.
#[utoipa::path(
    get,
    path = "/v1/files",
    operation_id = "listFiles",
    tag = "files",
    params(FileQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The key's files", body = FileList),
        (status = 400, description = "A bad query parameter", body = crate::error::ErrorResponse),
        crate::openapi::responses::KeyRequired,
    )
)]
pub async fn list(
    caller: Result<Caller, ApiError>,
    query: web::Query<FileQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let limit = super::batches::page_limit(query.limit, 10_000, 10_000)?;
    let mut all = state
        .batches
        .files
        .list(Some(&caller.0.id), query.purpose.as_deref());
    match query.order.as_deref() {
        None | Some("desc") => {}
        Some("asc") => all.reverse(),
        Some(_) => {
            return Err(ApiError::bad_request("`order` must be `asc` or `desc`").with_param("order"))
        }
    }
    let (page, has_more) =
        crate::batches::paging::page(&all, |f| &f.id, query.after.as_deref(), limit);
    let page: Vec<FileObject> = page.into_iter().map(FileObject::from).collect();
    Ok(HttpResponse::Ok().json(FileList {
        object: "list",
        first_id: page.first().map(|f| f.id.clone()),
        last_id: page.last().map(|f| f.id.clone()),
        data: page,
        has_more,
    }))
}

/// A file's record.
#[utoipa::path(
    get,
    path = "/v1/files/{file_id}",
    operation_id = "retrieveFile",
    tag = "files",
    params(("file_id" = String, Path, description = "A file id (`file-...`) of this key's")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The file", body = FileObject),
        crate::openapi::responses::KeyRequired,
        (status = 404, description = "No such file for this key", body = crate::error::ErrorResponse),
    )
)]
pub async fn get(
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let meta = file_for(&state, &path, Some(&caller.0.id))?;
    Ok(HttpResponse::Ok().json(FileObject::from(meta)))
}

/// A file's bytes.
#[utoipa::path(
    get,
    path = "/v1/files/{file_id}/content",
    operation_id = "downloadFile",
    tag = "files",
    params(("file_id" = String, Path, description = "A file id (`file-...`) of this key's")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The file as uploaded or written (JSON lines)", content_type = "application/octet-stream", body = String),
        crate::openapi::responses::KeyRequired,
        (status = 404, description = "No such file for this key", body = crate::error::ErrorResponse),
    )
)]
pub async fn content(
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let meta = file_for(&state, &path, Some(&caller.0.id))?;
    download(&state, &meta).await
}

/// The file's bytes, streamed from disk (never read whole into memory).
pub async fn download(state: &AppState, meta: &FileMeta) -> Result<HttpResponse, ApiError> {
    let path = state.batches.files.data_path(&meta.id);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        tracing::error!(error = %e, file = %meta.id, "a file's bytes could not be read");
        ApiError::internal("The file's bytes could not be read.")
    })?;
    let name = meta
        .filename
        .replace(|c: char| c == '"' || c == '\\' || c.is_control(), "_");
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .streaming(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)))
}

/// Deletes a file. A file a batch still reads cannot be deleted until the batch ends.
#[utoipa::path(
    delete,
    path = "/v1/files/{file_id}",
    operation_id = "deleteFile",
    tag = "files",
    params(("file_id" = String, Path, description = "A file id (`file-...`) of this key's")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deleted", body = FileDeleted),
        crate::openapi::responses::KeyRequired,
        (status = 404, description = "No such file for this key", body = crate::error::ErrorResponse),
        (status = 409, description = "A batch that has not finished reads the file", body = crate::error::ErrorResponse),
        (status = 503, description = "The file could not be removed (the disk)", body = crate::error::ErrorResponse),
    )
)]
pub async fn delete(
    caller: Result<Caller, ApiError>,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller?;
    let meta = file_for(&state, &path, Some(&caller.0.id))?;
    if let Some(batch) = state.batches.reading(&meta.id) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "invalid_request_error",
            format!("Batch {batch} has not finished and reads this file; cancel it or wait for it first."),
        ));
    }
    let batches = state.batches.clone();
    let id = meta.id.clone();
    let deleted = web::block(move || batches.files.delete(&id))
        .await
        .map_err(|e| ApiError::internal(format!("could not delete the file: {e}")))?
        .map_err(|e| {
            tracing::error!(error = %e, "could not delete a file");
            ApiError::storage_unavailable()
        })?;
    Ok(HttpResponse::Ok().json(FileDeleted {
        id: meta.id,
        object: "file",
        deleted,
    }))
}
