//! The AES-128 key and the per-blob IVs as sd blobs write them: 32 hex characters (16 bytes).

/// Length in hex characters of the AES key and of each blob's IV (16 bytes each).
pub const KEY_HEX_LEN: usize = 32;

/// Decodes a 32-hex-character key or iv into 16 bytes; `None` if it is anything else.
pub(crate) fn decode_hex16(text: &str) -> Option<[u8; 16]> {
    if text.len() != KEY_HEX_LEN {
        return None;
    }
    let mut raw = [0u8; 16];
    hex::decode_to_slice(text, &mut raw).ok()?;
    Some(raw)
}
