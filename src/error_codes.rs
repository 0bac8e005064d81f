//! Every error code the gateway itself answers with, in one table: the code clients branch on,
//! the HTTP status it comes with, and its OpenAI error type. Upstream errors keep the
//! upstream's own code and are not listed. The table is in the OpenAPI documents (the
//! `ErrorDetail.code` description) and in README's Errors section; a test keeps both true.

use actix_web::http::StatusCode;

macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:literal, $kind:literal, $when:literal;)*) => {
        /// An error code of the gateway's own.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($variant),*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code),*
                }
            }

            /// The status this code comes with; `None` where it varies (a policy's rejection).
            pub fn status(self) -> Option<StatusCode> {
                match self {
                    $(Code::$variant => StatusCode::from_u16($status).ok()),*
                }
            }

            /// The OpenAI error type (`error.type`) it comes with.
            pub fn kind(self) -> &'static str {
                match self {
                    $(Code::$variant => $kind),*
                }
            }

            /// When a client sees it.
            pub fn when(self) -> &'static str {
                match self {
                    $(Code::$variant => $when),*
                }
            }
        }
    };
}

// A status of 0 means "the status varies": it is given where the error is made.
error_codes! {
    InvalidJson => "invalid_json", 400, "invalid_request_error", "the body is not valid JSON";
    ModelTooLong => "model_too_long", 400, "invalid_request_error", "`model` is longer than 256 bytes";
    TooManyInputs => "too_many_inputs", 400, "invalid_request_error", "an embeddings request over 2048 inputs";
    DimensionsTooLarge => "dimensions_too_large", 400, "invalid_request_error", "`dimensions` above 8192";
    TooManyEmbeddingValues => "too_many_embedding_values", 400, "invalid_request_error", "a mock embeddings reply over 2^20 values";
    UnsupportedParameter => "unsupported_parameter", 400, "invalid_request_error", "a parameter a translating adapter cannot express";
    UnsupportedValue => "unsupported_value", 400, "invalid_request_error", "a value a provider kind cannot serve (`encoding_format`)";
    InvalidPolicy => "invalid_policy", 400, "invalid_request_error", "a draft script from the editor that does not compile (saving, simulating or testing it)";
    UnknownTeam => "unknown_team", 400, "invalid_request_error", "a key given a `team` id that no team has";
    InvalidApiKey => "invalid_api_key", 401, "authentication_error", "no key, a malformed header, an unknown or revoked key";
    ExpiredApiKey => "expired_api_key", 401, "authentication_error", "a key past its `expires_at`";
    InsufficientPermissions => "insufficient_permissions", 403, "permission_error", "a user key on an admin endpoint";
    PoliciesReadOnly => "policies_read_only", 403, "permission_error", "writing or deleting a policy script with `--read-only-policies`";
    ModelNotAllowed => "model_not_allowed", 403, "permission_error", "no target the request could reach is allowed for the key";
    NotFound => "not_found", 404, "not_found_error", "an unknown path or resource";
    ModelNotFound => "model_not_found", 404, "invalid_request_error", "an unknown model";
    ResponseNotFound => "response_not_found", 404, "invalid_request_error", "a stored response (`previous_response_id`, `/v1/responses/{id}`) that is unknown, expired or another key's";
    MethodNotAllowed => "method_not_allowed", 405, "invalid_request_error", "a known path with the wrong method";
    TeamHasKeys => "team_has_keys", 409, "invalid_request_error", "deleting a team that live keys still belong to (move or revoke them first)";
    PayloadTooLarge => "payload_too_large", 413, "invalid_request_error", "a body over `--body-limit`";
    RateLimitExceeded => "rate_limit_exceeded", 429, "rate_limit_error", "a request limit, budget or in-flight limit (a key's or a policy's) is used up";
    BudgetExceeded => "budget_exceeded", 429, "rate_limit_error", "in-band, ending a stream: its completion would take a hard token budget past its limit";
    ContentBlocked => "content_blocked", 422, "invalid_request_error", "a policy's output guard (`ctx.guard_output`) found blocked content in the reply: the whole reply, or in-band, ending a stream before the text that matched";
    PolicyRejected => "policy_rejected", 0, "invalid_request_error", "`ctx.reject(status, message)`: the policy's status";
    PolicyError => "policy_error", 500, "api_error", "a policy script failed (the cause is in the request log)";
    InternalError => "internal_error", 500, "api_error", "a fault of the gateway's own";
    MockFailure => "mock_failure", 0, "server_error", "the mock provider's injected failure (`mock.fail_status`)";
    BadUpstreamResponse => "bad_upstream_response", 502, "api_error", "the upstream broke protocol, or sent a 2xx that is not JSON";
    UpstreamResponseTooLarge => "upstream_response_too_large", 502, "api_error", "a reply over the provider's `max_response_bytes`";
    UpstreamUnreachable => "upstream_unreachable", 502, "api_error", "the upstream cannot be reached";
    CircuitOpen => "circuit_open", 503, "api_error", "every target's circuit breaker is open";
    StorageUnavailable => "storage_unavailable", 503, "api_error", "the store cannot write (a full disk); the change was not made";
    StoreUnavailable => "store_unavailable", 503, "api_error", "the shared store (Redis) did not answer in time: the request's limits could not be checked, or the change was not made";
    UpstreamTimeout => "upstream_timeout", 504, "api_error", "the upstream did not answer within its timeouts";
}

/// The table as Markdown rows (`| code | status | type | when |`), for the documents.
pub fn markdown_table() -> String {
    let mut out = String::from("| code | status | type | when |\n|---|---|---|---|\n");
    for code in Code::ALL {
        let status = code
            .status()
            .map_or_else(|| "varies".to_string(), |s| s.as_u16().to_string());
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            code.as_str(),
            status,
            code.kind(),
            code.when()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert!(code
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn readme_lists_every_code_as_the_table_says() {
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README's error code table is out of date; paste error_codes::markdown_table():\n{}",
            markdown_table()
        );
    }
}
