//! `kind: gemini`: not implemented yet in this commit.
pub struct GeminiProvider;
impl GeminiProvider {
    pub fn build(
        config: &crate::config::ProviderConfig,
    ) -> Result<std::sync::Arc<crate::providers::mock::MockProvider>, String> {
        Err(format!(
            "provider {}: kind gemini is not implemented yet",
            config.name
        ))
    }
}
