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

/// The URL checked: `base` with `/health/live`, or `/health/ready` when `ready`. A `base`
/// without a scheme (`127.0.0.1:8080`, as the Dockerfile gives it) is `https://` when the
/// gateway serves TLS (`tls`: `SWITCHBOARD_TLS_CERT` is set, in a container the same
/// environment the gateway has) and `http://` otherwise; a full URL is used as given.
pub fn target(base: &str, ready: bool, tls: bool) -> String {
    let path = if ready {
        "/health/ready"
    } else {
        "/health/live"
    };
    let base = base.trim_end_matches('/');
    if base.contains("://") {
        format!("{base}{path}")
    } else {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{base}{path}")
    }
}

/// Whether `url` is HTTPS to this machine's loopback. Its certificate is then not checked:
/// the gateway's certificate names its public host, not 127.0.0.1, and the check sends
/// nothing secret and reads only a status, from a port on this machine.
fn https_to_loopback(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    url.scheme() == "https"
        && match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        }
}

/// GETs the health URL of the gateway at `base` (see [`target`]); `Ok(url)` when it answered
/// 200.
pub fn check(base: &str, ready: bool, tls: bool) -> Result<String, HealthcheckError> {
    let url = target(base, ready, tls);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HealthcheckError::Runtime)?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .danger_accept_invalid_certs(https_to_loopback(&url))
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
            target("http://127.0.0.1:8080", false, true),
            "http://127.0.0.1:8080/health/live",
            "a full URL is used as given"
        );
        assert_eq!(
            target("http://gw:9000/", true, false),
            "http://gw:9000/health/ready"
        );
        assert_eq!(
            target("127.0.0.1:8080", false, false),
            "http://127.0.0.1:8080/health/live"
        );
        assert_eq!(
            target("127.0.0.1:8080", true, true),
            "https://127.0.0.1:8080/health/ready",
            "no scheme: HTTPS when the gateway serves TLS"
        );
    }

    #[test]
    fn only_https_to_loopback_skips_the_certificate_check() {
        for url in [
            "https://127.0.0.1:8080/health/live",
            "https://[::1]:8080/health/live",
            "https://localhost:8080/health/live",
        ] {
            assert!(https_to_loopback(url), "{url}");
        }
        for url in [
            "http://127.0.0.1:8080/health/live",
            "https://gw.example.com/health/live",
            "https://10.0.0.5:8080/health/live",
            "https://127.0.0.1.example.com/health/live",
            "not a url",
        ] {
            assert!(!https_to_loopback(url), "{url}");
        }
    }
}
