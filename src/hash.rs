//! Stable hashes: the same bytes give the same number on every machine, version and run.
//!
//! Used for request fingerprints, resume keys and `--shard` membership, all of which are
//! persisted or compared across runs, so `std`'s randomly seeded hasher will not do.

use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

/// A 64-bit stable hash of `bytes`.
pub fn hash64(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// A 128-bit stable hash of `bytes`.
pub fn hash128(bytes: &[u8]) -> u128 {
    xxh3_128(bytes)
}

/// The resume key of an `(id, model)` pair. The separator byte cannot occur in either part
/// as written by orbatch (ids and model ids are JSON strings without NUL in practice, and a
/// collision would only make two keys share a skip decision).
pub fn key64(id: &str, model: &str) -> u64 {
    let len = id.len() + model.len() + 1;
    // Short pairs (nearly all) are joined on the stack: this runs for every record read back.
    let mut stack = [0u8; 256];
    if let Some(buf) = stack.get_mut(..len) {
        let (head, tail) = buf.split_at_mut(id.len());
        head.copy_from_slice(id.as_bytes());
        if let Some((sep, rest)) = tail.split_first_mut() {
            *sep = 0;
            rest.copy_from_slice(model.as_bytes());
        }
        return xxh3_64(buf);
    }
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(id.as_bytes());
    buf.push(0);
    buf.extend_from_slice(model.as_bytes());
    xxh3_64(&buf)
}

/// Parse a 32-hex-digit fingerprint back into its number (for a compact resume set).
pub fn parse_hex128(s: &str) -> Option<u128> {
    if s.len() != 32 {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_across_versions() {
        // Pinned values: if these change, every user's resume and shard split breaks.
        assert_eq!(hash64(b"q17"), xxh3_64(b"q17"));
        // Literal values, so that a change of the xxhash crate (or its features) shows here
        // rather than as every resumed run paying again and every shard changing members.
        assert_eq!(hash64(b"q17"), 0x2cbc_5427_c14a_c75c);
        assert_eq!(key64("q17", "openai/gpt-4o-mini"), 0x1ccc_bae9_bb7b_8d8c);
        assert_eq!(
            format!("{:032x}", hash128(b"chat\n{}")),
            "d8139c349a62604beb3c775b0223e607"
        );
        assert_eq!(key64("a", "b"), hash64(b"a\0b"));
        assert_ne!(key64("ab", "c"), key64("a", "bc"));
        // Joined on the stack or on the heap: the same hash.
        let long = "x".repeat(300);
        assert_eq!(key64(&long, "m"), hash64(format!("{long}\0m").as_bytes()));
        assert_eq!(key64("", ""), hash64(b"\0"));
        let edge = "y".repeat(254);
        assert_eq!(key64(&edge, "m"), hash64(format!("{edge}\0m").as_bytes()));
        let h = format!("{:032x}", hash128(b"body"));
        assert_eq!(parse_hex128(&h), Some(xxh3_128(b"body")));
    }
}
