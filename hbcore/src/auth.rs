//! The one HMAC-SHA256 setup of the project: link handshakes sign their
//! transcript with it, heartbeat frames carry its tag. Keys are the sites'
//! pre-shared key files ([`crate::config::read_key`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a tag.
pub const TAG_LEN: usize = 32;

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn over_parts(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m = keyed(key);
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") sign differently.
        m.update(&(part.len() as u32).to_le_bytes());
        m.update(part);
    }
    m
}

/// The tag of `bytes`.
pub fn sign(key: &[u8], bytes: &[u8]) -> [u8; TAG_LEN] {
    sign_concat(key, &[bytes])
}

/// The tag of the concatenation of `pieces` (as if they were one slice).
pub fn sign_concat(key: &[u8], pieces: &[&[u8]]) -> [u8; TAG_LEN] {
    let mut m = keyed(key);
    for piece in pieces {
        m.update(piece);
    }
    m.finalize().into_bytes().into()
}

/// Whether `tag` is the tag of `bytes` (compared in constant time).
pub fn verify(key: &[u8], bytes: &[u8], tag: &[u8]) -> bool {
    let mut m = keyed(key);
    m.update(bytes);
    m.verify_slice(tag).is_ok()
}

/// The tag of a sequence of fields (a handshake transcript).
pub fn sign_parts(key: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
    over_parts(key, parts).finalize().into_bytes().into()
}

/// Whether `tag` is the tag of the fields `parts` (compared in constant time).
pub fn verify_parts(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    over_parts(key, parts).verify_slice(tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_depend_on_key_bytes_and_field_boundaries() {
        let key = b"0123456789abcdef";
        let tag = sign(key, b"hello");
        assert!(verify(key, b"hello", &tag));
        assert!(!verify(b"fedcba9876543210", b"hello", &tag));
        assert!(!verify(key, b"hellO", &tag));
        let parts = sign_parts(key, &[b"ab", b"c"]);
        assert!(verify_parts(key, &[b"ab", b"c"], &parts));
        assert!(!verify_parts(key, &[b"a", b"bc"], &parts));
    }
}
