//! Webhook signatures: HMAC-SHA256 over `"{timestamp}.{body}"`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the unix timestamp (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// Header carrying the delivery's stable id (the same for every retry and replay of one event).
pub const ID_HEADER: &str = "webhook-id";

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

/// Checks a `Webhook-Signature` value in constant time (for receivers).
/// Accepts a header holding several space-separated signatures.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
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
        assert!(verify(b"secret", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify(b"secret", 1_700_000_001, b"{\"a\":1}", &sig));
        assert!(!verify(b"other", 1_700_000_000, b"{\"a\":1}", &sig));
        assert!(!verify(b"secret", 1_700_000_000, b"{\"a\":2}", &sig));
        assert!(!verify(b"secret", 1_700_000_000, b"{\"a\":1}", "v1=zz"));
        assert!(verify(
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
}
