//! Stage 3, route: the decided routes (or the requested model) become the targets to try, and
//! the key's allow-list is held against each of them.

use super::failure::Failure;
use crate::error::ApiError;
use crate::error_codes::Code;
use crate::policy::Decision;
use crate::router::{self, ModelIndex, Target};
use crate::store::logs::AttemptLog;
use crate::store::KeyRecord;
use crate::wire::RequestBody;

/// Whether the key may be served by this target. Every target is checked before it is called
/// (fallbacks, pool members and split routes too), so routing can never reach a model the
/// key may not use. The key's entries are names, resolved as requests are.
pub fn may_use(caller: &KeyRecord, models: &ModelIndex, target: &Target) -> bool {
    caller.allows_model(&target.id, |name| models.resolve(name).map(|t| &*t.id))
}

/// The targets in order; a 404 when nothing resolves, a 403 when the key may use none.
pub fn route(
    models: &ModelIndex,
    caller: &KeyRecord,
    decision: &Decision,
    body: &RequestBody,
    requested: &str,
) -> Result<Vec<Target>, Failure> {
    let targets = router::targets::resolve(models, &decision.route.routes, body.model())?;
    if !targets.iter().any(|t| may_use(caller, models, t)) {
        return Err(Failure {
            error: Box::new(
                ApiError::forbidden(format!("This key may not use the model `{requested}`."))
                    .with_param("model")
                    .with_code(Code::ModelNotAllowed),
            ),
            attempts: AttemptLog::of(
                &targets
                    .iter()
                    .map(router::attempts::not_allowed)
                    .collect::<Vec<_>>(),
            ),
            calls: 0,
            detail: None,
        });
    }
    Ok(targets)
}
