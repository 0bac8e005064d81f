//! The signature every delivery carries, and its check (what a receiver does; the tests and
//! Rust receivers can use [`verify`]).
//!
//! `x-switchboard-signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The
//! timestamp is inside the signed text, so a receiver that refuses old timestamps refuses
//! replays: a captured delivery cannot be re-sent later with a fresh `t`. Every attempt is
//! signed anew, so a retry an hour later still passes a five-minute tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";
pub const EVENT_HEADER: &str = "x-switchboard-event";
pub const DELIVERY_HEADER: &str = "x-switchboard-delivery";
pub const ATTEMPT_HEADER: &str = "x-switchboard-attempt";

type HmacSha256 = Hmac<Sha256>;

/// The MAC of the signed text. HMAC takes keys of any length, so `None` (the crate's
/// "invalid length") does not happen; it is handled rather than unwrapped all the same.
fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The value of the signature header for `body` sent at `timestamp`.
pub fn header_value(secret: &[u8], timestamp: u64, body: &[u8]) -> Option<String> {
    let tag = mac(secret, timestamp, body)?.finalize().into_bytes();
    Some(format!("t={timestamp},v1={}", hex::encode(tag)))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is not `t=<secs>,v1=<hex>`")]
    Malformed,
    #[error("the timestamp is {age_secs} s away from now, beyond the tolerance")]
    Stale { age_secs: u64 },
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// Checks a signature header against the raw body as received: well-formed, timestamp within
/// `tolerance_secs` of `now` (unix seconds), and an HMAC that matches (compared in constant
/// time). Several `v1=` entries are accepted, so a sender may sign with two secrets while
/// rotating.
pub fn verify(
    header: &str,
    secret: &[u8],
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => {
                timestamp = Some(v.parse::<u64>().map_err(|_| VerifyError::Malformed)?)
            }
            Some(("v1", v)) => signatures.push(hex::decode(v).map_err(|_| VerifyError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let age_secs = now.abs_diff(timestamp);
    if age_secs > tolerance_secs {
        return Err(VerifyError::Stale { age_secs });
    }
    let matches = signatures
        .iter()
        .any(|sig| mac(secret, timestamp, body).is_some_and(|m| m.verify_slice(sig).is_ok()));
    if matches {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_timestamp_a_dot_and_the_body() {
        // Computed apart, with Python's hmac module:
        // hmac.new(b"Jefe", b"1700000000.what do ya want for nothing?", "sha256").hexdigest()
        assert_eq!(
            header_value(b"Jefe", 1_700_000_000, b"what do ya want for nothing?").unwrap(),
            "t=1700000000,v1=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e"
        );
    }

    #[test]
    fn verifies_and_refuses_tampering_replays_and_garbage() {
        let secret = b"whsec-0123456789abcdef";
        let body = br#"{"id":"whd_1","event":"breaker.opened"}"#;
        let header = header_value(secret, 1_000, body).unwrap();
        assert_eq!(verify(&header, secret, body, 1_010, 300), Ok(()));
        assert_eq!(
            verify(&header, secret, b"{}", 1_010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&header, b"another secret", body, 1_010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&header, secret, body, 2_000, 300),
            Err(VerifyError::Stale { age_secs: 1_000 })
        );
        // A replay with a fresh timestamp but the old signature fails: `t` is signed.
        let old_sig = header.split_once(",v1=").unwrap().1;
        let forged = format!("t=2000,v1={old_sig}");
        assert_eq!(
            verify(&forged, secret, body, 2_000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("v1=zz", secret, body, 1_000, 300),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify("t=1000", secret, body, 1_000, 300),
            Err(VerifyError::Malformed)
        );
    }
}
