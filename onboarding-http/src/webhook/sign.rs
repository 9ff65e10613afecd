//! Webhook signatures: HMAC-SHA256 over `"{timestamp}.{body}"`, one
//! `v1=<hex>` per signing secret (two while a rotation's overlap lasts),
//! and [`verify`] for receivers.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the unix timestamp (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying `v1=<hex HMAC-SHA256>`, space-separated when several secrets sign.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// Header carrying the delivery's stable id (the same for every retry and replay of one event).
pub const ID_HEADER: &str = "webhook-id";

/// How far a delivery's timestamp may be from the receiver's clock for
/// [`verify`] to accept it: 5 minutes. Older deliveries are refused, so a
/// captured one cannot be replayed later.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(300);

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length: the fallback is never taken.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Webhook-Signature` value for a body sent at `timestamp`: `v1=<hex>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("v1={}", hex(&tag))
}

/// The `Webhook-Signature` value signed by every secret (space-separated).
pub fn sign_all(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s.as_bytes(), timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a `Webhook-Signature` value against one secret, in constant time.
/// Accepts a header holding several space-separated signatures. Does not
/// look at the time: see [`verify`].
pub fn verify_signature(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split_whitespace().any(|candidate| {
        let Some(hex_sig) = candidate.strip_prefix("v1=") else {
            return false;
        };
        let Some(bytes) = unhex(hex_sig) else {
            return false;
        };
        mac(secret, timestamp, body).verify_slice(&bytes).is_ok()
    })
}

/// Why [`verify`] refused a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A webhook header is missing or not text.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// `Webhook-Timestamp` is not a unix time in seconds.
    #[error("the webhook-timestamp header is not a unix time")]
    BadTimestamp,
    /// The timestamp is further than [`TIMESTAMP_TOLERANCE`] from `now`.
    #[error("the delivery's timestamp is too far from now (replayed or delayed)")]
    Expired,
    /// No signature matches any of the secrets.
    #[error("no signature matches")]
    BadSignature,
}

/// Verifies a delivery the way a receiver should: the signature over
/// `timestamp.body` must match one of `secrets` (pass both while a
/// rotation's overlap lasts), and the timestamp must be within
/// [`TIMESTAMP_TOLERANCE`] of `now` (unix seconds).
///
/// ```
/// use onboarding_http::webhook::{sign, verify, SIGNATURE_HEADER, TIMESTAMP_HEADER};
/// let (secret, now, body) = ("whsec_example", 1_700_000_000, br#"{"type":"ping"}"#);
/// let mut headers = axum::http::HeaderMap::new();
/// headers.insert(TIMESTAMP_HEADER, now.to_string().parse().unwrap());
/// headers.insert(SIGNATURE_HEADER, sign(secret.as_bytes(), now, body).parse().unwrap());
/// assert!(verify(&[secret], &headers, body, now + 10).is_ok());
/// assert!(verify(&["another"], &headers, body, now).is_err());
/// assert!(verify(&[secret], &headers, body, now + 3600).is_err());
/// ```
pub fn verify(
    secrets: &[&str],
    headers: &axum::http::HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(VerifyError::MissingHeader(name))
    };
    let timestamp: i64 = header(TIMESTAMP_HEADER)?
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let signature = header(SIGNATURE_HEADER)?;
    let tolerance = i64::try_from(TIMESTAMP_TOLERANCE.as_secs()).unwrap_or(i64::MAX);
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(VerifyError::Expired);
    }
    if secrets
        .iter()
        .any(|s| verify_signature(s.as_bytes(), timestamp, body, signature))
    {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| char::from(c).to_digit(16);
            u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let sig = sign(b"secret", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
        assert!(verify_signature(
            b"secret",
            1_700_000_000,
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify_signature(
            b"secret",
            1_700_000_001,
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify_signature(
            b"other",
            1_700_000_000,
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify_signature(
            b"secret",
            1_700_000_000,
            b"{\"a\":2}",
            &sig
        ));
        assert!(!verify_signature(
            b"secret",
            1_700_000_000,
            b"{\"a\":1}",
            "v1=zz"
        ));
        assert!(verify_signature(
            b"secret",
            1_700_000_000,
            b"{\"a\":1}",
            &format!("v0=ab {sig}")
        ));
        // RFC 4231 test case 2.
        let mut m = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
    }

    #[test]
    fn verify_checks_every_secret_and_the_time() {
        let (t, body) = (1_700_000_000, b"{}".as_slice());
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, t.to_string().parse().unwrap());
        let both = sign_all(&["new", "old"], t, body);
        headers.insert(SIGNATURE_HEADER, both.parse().unwrap());
        assert_eq!(verify(&["old"], &headers, body, t), Ok(()));
        assert_eq!(verify(&["new"], &headers, body, t + 299), Ok(()));
        assert_eq!(verify(&["new"], &headers, body, t - 299), Ok(()));
        assert_eq!(
            verify(&["new"], &headers, body, t + 301),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            verify(&["third"], &headers, body, t),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&["new"], &headers, b"{ }", t),
            Err(VerifyError::BadSignature)
        );
        headers.insert(TIMESTAMP_HEADER, "soon".parse().unwrap());
        assert_eq!(
            verify(&["new"], &headers, body, t),
            Err(VerifyError::BadTimestamp)
        );
        headers.remove(SIGNATURE_HEADER);
        headers.insert(TIMESTAMP_HEADER, t.to_string().parse().unwrap());
        assert_eq!(
            verify(&["new"], &headers, body, t),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
    }
}
