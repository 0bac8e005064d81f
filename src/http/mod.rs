//! What every route shares: the callers (key extractors), CORS, security headers, and the 404
//! and 405 answers.

pub mod callers;
pub mod client_ip;
pub mod cors;
pub mod security_headers;

use crate::error::ApiError;
use crate::error_codes::Code;
use actix_web::http::StatusCode;
use actix_web::{web, Resource};

/// A resource whose unmatched methods get an OpenAI-shaped 405 instead of an empty one.
pub fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "This method is not allowed on this endpoint.",
            )
            .with_code(Code::MethodNotAllowed),
        )
    }))
}

/// The fallback for paths no route matches.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(crate::error::not_found_handler())
}
