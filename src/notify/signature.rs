//! The signature scheme of nhi-assure's webhooks, inbound and outbound:
//! `sha256=` + hex HMAC-SHA256 of `"{timestamp}.{body}"`, the timestamp in
//! its own header. The daemon verifies it (`daemon::webhook`); the webhook
//! sink signs with it, so one receiver's code checks both directions.

/// Header carrying the Unix timestamp (seconds) the sender signed.
pub const TIMESTAMP_HEADER: &str = "x-nhi-assure-timestamp";
/// Header carrying `sha256=` + the hex HMAC.
pub const SIGNATURE_HEADER: &str = "x-nhi-assure-signature";

type Hmac256 = hmac::Hmac<sha2::Sha256>;

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    // HMAC takes a key of any length: `new_from_slice` cannot fail here,
    // and an empty MAC would only be refused by the receiver.
    let Ok(mut mac) = <Hmac256 as KeyInit>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
