//! `switchboard healthcheck`: asks a running gateway whether it is alive (or ready), for a
//! container's health check in an image that has no curl.

use std::time::Duration;

/// How long the whole check may take: a health check that hangs is a failed one.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the gateway is not healthy, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("{url}: {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url}: {source}")]
    Request {
        url: String,
        // The chain (connection refused, timed out) is what an operator needs to see.
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// The URL checked: `base` (e.g. `http://127.0.0.1:8080`) with `/health/live`, or
/// `/health/ready` when `ready`.
pub fn target(base: &str, ready: bool) -> String {
    let path = if ready {
        "/health/ready"
    } else {
        "/health/live"
    };
    format!("{}{path}", base.trim_end_matches('/'))
}

/// GETs the health URL of the gateway at `base`; `Ok(url)` when it answered 200.
pub fn check(base: &str, ready: bool) -> Result<String, HealthcheckError> {
    let url = target(base, ready);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HealthcheckError::Runtime)?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(HealthcheckError::Client)?;
        let response = client.get(&url).send().await;
        match response {
            Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(url),
            Ok(r) => Err(HealthcheckError::Status {
                status: r.status(),
                url,
            }),
            Err(source) => Err(HealthcheckError::Request {
                url,
                source: source.without_url(),
            }),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_live_or_ready_path_of_the_base() {
        assert_eq!(
            target("http://127.0.0.1:8080", false),
            "http://127.0.0.1:8080/health/live"
        );
        assert_eq!(
            target("http://gw:9000/", true),
            "http://gw:9000/health/ready"
        );
    }
}
