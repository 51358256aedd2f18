//! `--chunk-tokens N [--chunk-overlap M]`: a text longer than N estimated tokens is split at
//! paragraph, then sentence (then word) boundaries by the `text-splitter` crate into chunks
//! of at most N tokens, each overlapping the one before by up to M. Tokens are estimated as
//! everywhere in orbatch, characters ÷ 4, so the splitter sizes chunks by characters.

use text_splitter::{ChunkConfig, TextSplitter};

/// Characters per estimated token (see [`crate::estimate`]).
const CHARS_PER_TOKEN: u64 = 4;

/// The chunking asked for, checked: `overlap < tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    pub tokens: u64,
    pub overlap: u64,
}

impl Chunking {
    /// Check the flags; the error names them.
    pub fn new(tokens: u64, overlap: u64) -> Result<Chunking, String> {
        if tokens == 0 {
            return Err("--chunk-tokens must be at least 1".into());
        }
        if overlap >= tokens {
            return Err(format!(
                "--chunk-overlap {overlap} must be less than --chunk-tokens {tokens}"
            ));
        }
        Ok(Chunking { tokens, overlap })
    }

    fn chars(n: u64) -> usize {
        usize::try_from(n.saturating_mul(CHARS_PER_TOKEN)).unwrap_or(usize::MAX)
    }

    /// The pieces of `text` as `(byte offset, piece)`, in order: one piece when it fits.
    pub fn split<'t>(&self, text: &'t str) -> Vec<(usize, &'t str)> {
        let capacity = Chunking::chars(self.tokens);
        if text.chars().count() <= capacity {
            return vec![(0, text)];
        }
        let config = ChunkConfig::new(capacity).with_trim(false);
        let config = match config.with_overlap(Chunking::chars(self.overlap)) {
            Ok(c) => c,
            // `new` keeps overlap < tokens, so this is only a defence.
            Err(_) => ChunkConfig::new(capacity).with_trim(false),
        };
        TextSplitter::new(config).chunk_indices(text).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_texts_stay_whole_and_paragraphs_are_kept_together() {
        let c = Chunking::new(10, 2).unwrap();
        assert_eq!(c.split("short"), [(0, "short")]);
        let text = "First paragraph, short.\n\nSecond paragraph is here.\n\nThird one.";
        let pieces: Vec<&str> = c.split(text).into_iter().map(|(_, p)| p).collect();
        assert!(pieces.len() > 1, "{pieces:?}");
        assert!(
            pieces[0].starts_with("First paragraph, short."),
            "{pieces:?}"
        );
        assert!(Chunking::new(5, 5).is_err() && Chunking::new(0, 0).is_err());
    }

    proptest! {
        /// The chunks cover the text in order, each one a slice of it at its offset, at most
        /// `tokens × 4` characters, and each overlaps the one before by at most `overlap × 4`.
        #[test]
        fn chunks_cover_the_text_in_order_with_the_stated_overlap(
            text in "([a-z]{1,9}[ .,]{1,2}|\n\n|\n){0,400}",
            tokens in 2u64..40,
            overlap_share in 0u64..100,
        ) {
            let overlap = tokens * overlap_share / 100;
            let c = Chunking::new(tokens, overlap).unwrap();
            let pieces = c.split(&text);
            prop_assert!(!pieces.is_empty());
            let mut end = 0usize;
            for (i, (offset, piece)) in pieces.iter().enumerate() {
                prop_assert_eq!(&text[*offset..*offset + piece.len()], *piece);
                prop_assert!(piece.chars().count() as u64 <= tokens * 4 || pieces.len() == 1);
                if i == 0 {
                    prop_assert_eq!(*offset, 0);
                } else {
                    prop_assert!(*offset <= end, "a gap before chunk {}", i);
                    prop_assert!(*offset > pieces[i - 1].0, "chunks go forward");
                    let shared = text[*offset..end].chars().count() as u64;
                    prop_assert!(shared <= overlap * 4, "overlap {} > {}", shared, overlap * 4);
                }
                end = end.max(offset + piece.len());
            }
            prop_assert_eq!(end, text.len(), "the text is covered to its end");
        }
    }
}
