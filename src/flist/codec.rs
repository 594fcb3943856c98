//! The rfs block codec (pure): `key = BLAKE2b-256(plain)`,
//! `stored = AES-256-GCM(key, nonce = key[..12])(raw snappy(plain))`,
//! `id = BLAKE2b-256(stored)`. Decoding checks both hashes and the size, so a block
//! that does not match its manifest row is an error, never wrong data.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// Plaintext bytes per block (every block but a file's last is exactly this long).
pub const BLOCK_SIZE: usize = 512 * 1024;

/// Why a stored blob was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// BLAKE2b-256 of the stored bytes is not the block id: corrupt or wrong object.
    IdMismatch,
    /// AES-GCM authentication failed.
    Decrypt,
    /// The snappy stream is malformed.
    Decompress(String),
    /// The plaintext is longer than a block.
    TooLarge(usize),
    /// BLAKE2b-256 of the plaintext is not the block key.
    KeyMismatch,
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::IdMismatch => write!(
                f,
                "content does not hash to the block id (corrupt or wrong object)"
            ),
            CodecError::Decrypt => write!(f, "decryption failed (wrong key or corrupt blob)"),
            CodecError::Decompress(why) => write!(f, "snappy decompression failed: {why}"),
            CodecError::TooLarge(n) => write!(f, "plaintext of {n} bytes is larger than a block"),
            CodecError::KeyMismatch => write!(f, "plaintext does not hash to the block key"),
        }
    }
}

impl std::error::Error for CodecError {}

/// BLAKE2b with a 32-byte digest.
pub fn hash(data: &[u8]) -> [u8; 32] {
    crate::depmod::stamp::blake2b256(data)
}

/// Lower-case hex of a digest (how stores name blocks).
pub fn hex(id: &[u8; 32]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies and decodes a stored blob.
pub fn decode(id: &[u8; 32], key: &[u8; 32], stored: Vec<u8>) -> Result<Vec<u8>, CodecError> {
    if &hash(&stored) != id {
        return Err(CodecError::IdMismatch);
    }
    // Decrypted in place: the blob is ours, and a copy of 512 KiB costs as much as
    // decrypting it (musl maps fresh pages for every large buffer).
    let mut sealed = stored;
    let compressed = cipher(key)
        .open_in_place(nonce(key), Aad::empty(), &mut sealed)
        .map_err(|_| CodecError::Decrypt)?;
    let length =
        snap::raw::decompress_len(compressed).map_err(|e| CodecError::Decompress(e.to_string()))?;
    if length > BLOCK_SIZE {
        return Err(CodecError::TooLarge(length));
    }
    // Every byte is written by the decompressor: a kept buffer needs no zeroing first.
    let mut plain = super::buffers::take_filled(length);
    let written = snap::raw::Decoder::new()
        .decompress(compressed, &mut plain)
        .map_err(|e| CodecError::Decompress(e.to_string()))?;
    plain.truncate(written);
    super::buffers::give(sealed);
    if &hash(&plain) != key {
        return Err(CodecError::KeyMismatch);
    }
    Ok(plain)
}

/// Encodes a plaintext block as rfs does: (id, key, stored). Deterministic.
pub fn encode(plain: &[u8]) -> ([u8; 32], [u8; 32], Vec<u8>) {
    let key = hash(plain);
    let mut stored = snap::raw::Encoder::new()
        .compress_vec(plain)
        .unwrap_or_default();
    // Sealing fails only for inputs of more than 64 GiB; a block is 512 KiB.
    let _ = cipher(&key).seal_in_place_append_tag(nonce(&key), Aad::empty(), &mut stored);
    (hash(&stored), key, stored)
}

/// AES-256-GCM keyed with the block key (always 32 bytes, so the key is always valid).
fn cipher(key: &[u8; 32]) -> LessSafeKey {
    let unbound = UnboundKey::new(&AES_256_GCM, key).unwrap_or_else(|_| unreachable!());
    LessSafeKey::new(unbound)
}

/// rfs's nonce: the first 12 bytes of the block key.
fn nonce(key: &[u8; 32]) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes.copy_from_slice(&key[..12]);
    Nonce::assume_unique_for_key(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The fixture's test vector (odd-tree /hello.txt).
    #[test]
    fn rfs_test_vector() {
        let plain = b"hello flist\n";
        let key: [u8; 32] =
            unhex("bd903b87f488ceed3f515e42c150fd5857b8bdc6fc6a09d9b999cdf66bccddcf")
                .try_into()
                .unwrap();
        let id: [u8; 32] =
            unhex("30ee1d63f9dcdd993f73bdfad60ed773e26350dcde159d42b5736b6bc3e46971")
                .try_into()
                .unwrap();
        let stored = unhex("e5a2d10ba07f6d343b310951991de7d0f444bb76c4d66d58a94da56e111d");
        assert_eq!(decode(&id, &key, stored.clone()).unwrap(), plain);
        assert_eq!(encode(plain), (id, key, stored));
    }

    #[test]
    fn tampering_is_caught() {
        let (id, key, stored) = encode(&vec![7u8; 1000]);
        let mut bad = stored.clone();
        bad[3] ^= 1;
        assert_eq!(decode(&id, &key, bad), Err(CodecError::IdMismatch));
        let wrong_key = hash(b"other");
        assert_eq!(
            decode(&id, &wrong_key, stored.clone()),
            Err(CodecError::Decrypt)
        );
        assert!(decode(&id, &key, Vec::new()).is_err());
    }
}
