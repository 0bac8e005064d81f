//! Parameters a translating adapter (anthropic, gemini) cannot express: refused with a 400, or
//! left out and listed in `x-switchboard-dropped-params`, as the provider's
//! `unsupported_params` setting says.

use super::translate_error::{Api, TranslateError};
use crate::config::UnsupportedParams;

/// Collects what an adapter dropped while translating one request.
#[derive(Debug)]
pub struct Unmapped {
    mode: UnsupportedParams,
    /// The parameters left out, in the order the request had them.
    pub dropped: Vec<String>,
}

impl Unmapped {
    pub fn new(mode: UnsupportedParams) -> Self {
        Unmapped {
            mode,
            dropped: Vec::new(),
        }
    }

    /// `key` cannot be expressed in `api`: an error when refusing, `Ok` when it is dropped
    /// (and remembered for the response header).
    pub fn handle(&mut self, key: &str, api: Api) -> Result<(), TranslateError> {
        match self.mode {
            UnsupportedParams::Reject => Err(TranslateError::Unsupported {
                key: key.to_string(),
                api,
            }),
            UnsupportedParams::Drop => {
                self.dropped.push(key.to_string());
                Ok(())
            }
        }
    }
}
