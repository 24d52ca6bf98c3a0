//! Training text: bundled public-domain slices (or any file), as bytes or GPT-2 BPE tokens,
//! with a held-out split.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The bundled text slices, by name (see `data/text/README.md` for their sources).
pub const BUNDLED: &[(&str, &[u8])] = &[
    (
        "moby_dick_a",
        include_bytes!("../../../data/text/moby_dick_a.txt"),
    ),
    (
        "moby_dick_b",
        include_bytes!("../../../data/text/moby_dick_b.txt"),
    ),
    (
        "sotu_1790s",
        include_bytes!("../../../data/text/sotu_1790s.txt"),
    ),
    (
        "sotu_1860s",
        include_bytes!("../../../data/text/sotu_1860s.txt"),
    ),
    (
        "sotu_1930s",
        include_bytes!("../../../data/text/sotu_1930s.txt"),
    ),
    (
        "sotu_2000s",
        include_bytes!("../../../data/text/sotu_2000s.txt"),
    ),
];

/// How text becomes token ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    /// One token per byte (vocabulary 256).
    #[default]
    Bytes,
    /// GPT-2's byte-pair encoding (`r50k_base`, vocabulary 50 257), from `tiktoken-rs`.
    Gpt2,
}

impl Tokenizer {
    /// The vocabulary size the model needs.
    pub fn vocab(self) -> usize {
        match self {
            Tokenizer::Bytes => 256,
            Tokenizer::Gpt2 => 50_257,
        }
    }

    /// Token ids of `bytes` (invalid UTF-8 is replaced before BPE).
    pub fn encode(self, bytes: &[u8]) -> Vec<u32> {
        match self {
            Tokenizer::Bytes => bytes.iter().map(|&c| u32::from(c)).collect(),
            Tokenizer::Gpt2 => {
                tiktoken_rs::r50k_base_singleton().encode_ordinary(&String::from_utf8_lossy(bytes))
            }
        }
    }
}

/// A batch of `b` windows: inputs `[b, t]` and next-token targets `[b, t]`, row-major.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Token ids.
    pub ids: Vec<u32>,
    /// The token after each id.
    pub targets: Vec<u32>,
    /// Rows.
    pub b: usize,
    /// Tokens per row.
    pub t: usize,
}

/// A tokenised corpus split into a training part and a held-out tail.
#[derive(Clone, Debug)]
pub struct TextData {
    name: String,
    train: Vec<u32>,
    held_out: Vec<u32>,
}

impl TextData {
    /// Loads `source`: `bundled:NAME` (one of [`BUNDLED`]) or a file path. `limit` keeps only
    /// the first `limit` training bytes (a neuron with little data); `held_out` is the fraction
    /// of the text kept for evaluation (taken from the end, before the limit applies).
    pub fn load(source: &str, limit: Option<usize>, held_out: f64, seq: usize) -> Result<TextData> {
        TextData::load_with(source, limit, held_out, seq, Tokenizer::Bytes)
    }

    /// [`TextData::load`] with a tokenizer.
    pub fn load_with(
        source: &str,
        limit: Option<usize>,
        held_out: f64,
        seq: usize,
        tokenizer: Tokenizer,
    ) -> Result<TextData> {
        let bytes: Vec<u8> = if let Some(name) = source.strip_prefix("bundled:") {
            BUNDLED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| b.to_vec())
                .ok_or_else(|| {
                    let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
                    Error::Data(format!(
                        "no bundled text named {name:?}; there are {}",
                        names.join(", ")
                    ))
                })?
        } else {
            std::fs::read(source).map_err(|e| Error::Io {
                path: source.to_string(),
                source: e,
            })?
        };
        TextData::from_bytes_with(source, bytes, limit, held_out, seq, tokenizer)
    }

    /// Splits `bytes` as [`TextData::load`] does, one token per byte.
    pub fn from_bytes(
        name: &str,
        bytes: Vec<u8>,
        limit: Option<usize>,
        held_out: f64,
        seq: usize,
    ) -> Result<TextData> {
        TextData::from_bytes_with(name, bytes, limit, held_out, seq, Tokenizer::Bytes)
    }

    /// Splits `bytes`, then tokenises each part.
    pub fn from_bytes_with(
        name: &str,
        bytes: Vec<u8>,
        limit: Option<usize>,
        held_out: f64,
        seq: usize,
        tokenizer: Tokenizer,
    ) -> Result<TextData> {
        if !(held_out > 0.0 && held_out < 1.0) {
            return Err(Error::Data(format!(
                "held-out fraction must be in (0, 1), got {held_out}"
            )));
        }
        let cut = ((bytes.len() as f64) * (1.0 - held_out)) as usize;
        let mut train = &bytes[..cut];
        if let Some(limit) = limit {
            train = &train[..limit.min(train.len())];
        }
        let train = tokenizer.encode(train);
        let held = tokenizer.encode(&bytes[cut..]);
        for (part, what) in [(&train, "training"), (&held, "held-out")] {
            if part.len() < seq + 2 {
                return Err(Error::Data(format!(
                    "{name}: {what} part has {} tokens, fewer than a window of {} tokens needs",
                    part.len(),
                    seq + 1
                )));
            }
        }
        Ok(TextData {
            name: name.to_string(),
            train,
            held_out: held,
        })
    }

    /// The source it came from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Training tokens.
    pub fn train_len(&self) -> usize {
        self.train.len()
    }

    fn window(text: &[u32], start: usize, t: usize, out: &mut Batch) {
        out.ids.extend_from_slice(&text[start..start + t]);
        out.targets
            .extend_from_slice(&text[start + 1..start + t + 1]);
    }

    /// `b` random training windows of `t` tokens.
    pub fn train_batch(&self, b: usize, t: usize, rng: &mut impl Rng) -> Batch {
        let mut out = Batch {
            ids: Vec::with_capacity(b * t),
            targets: Vec::with_capacity(b * t),
            b,
            t,
        };
        for _ in 0..b {
            let start = rng.random_range(0..self.train.len() - t - 1);
            TextData::window(&self.train, start, t, &mut out);
        }
        out
    }

    /// The held-out text as consecutive windows, `b` per batch, at most `max_batches` batches
    /// (the same windows every time, so evaluations compare).
    pub fn held_out_batches(&self, b: usize, t: usize, max_batches: usize) -> Vec<Batch> {
        let windows = (self.held_out.len() - 1) / t;
        let mut batches = Vec::new();
        let mut w = 0;
        while w + b <= windows && batches.len() < max_batches {
            let mut out = Batch {
                ids: Vec::with_capacity(b * t),
                targets: Vec::with_capacity(b * t),
                b,
                t,
            };
            for k in 0..b {
                TextData::window(&self.held_out, (w + k) * t, t, &mut out);
            }
            batches.push(out);
            w += b;
        }
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bundled_texts_load_and_differ() {
        let a = TextData::load("bundled:moby_dick_a", None, 0.1, 64).unwrap();
        let b = TextData::load("bundled:sotu_1860s", None, 0.1, 64).unwrap();
        assert_eq!(a.train_len(), 108_000);
        assert_ne!(a.train[..100], b.train[..100]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let batch = a.train_batch(4, 64, &mut rng);
        assert_eq!(batch.ids.len(), 256);
        assert_eq!(batch.ids[1], batch.targets[0]);
        let held = a.held_out_batches(8, 64, 100);
        assert!(!held.is_empty());
        assert_eq!(held[0].ids.len(), 8 * 64);
    }

    #[test]
    fn bad_sources_are_named() {
        let e = TextData::load("bundled:nope", None, 0.1, 64).unwrap_err();
        assert!(
            e.to_string().contains("no bundled text named \"nope\""),
            "{e}"
        );
        let e = TextData::load("/nonexistent/file.txt", None, 0.1, 64).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/file.txt"), "{e}");
        let e = TextData::from_bytes("tiny", vec![b'a'; 50], None, 0.1, 64).unwrap_err();
        assert!(e.to_string().contains("fewer than a window"), "{e}");
        let e = TextData::from_bytes("x", vec![b'a'; 5000], None, 1.5, 64).unwrap_err();
        assert!(e.to_string().contains("held-out fraction"), "{e}");
        let e = TextData::load("bundled:moby_dick_a", Some(10), 0.1, 64).unwrap_err();
        assert!(e.to_string().contains("training part has 10 tokens"), "{e}");
    }

    #[test]
    fn gpt2_tokens_are_fewer_than_bytes_and_in_the_vocabulary() {
        let b = TextData::load_with("bundled:sotu_1930s", None, 0.1, 32, Tokenizer::Gpt2).unwrap();
        assert!(b.train_len() < 108_000 / 3, "{} tokens", b.train_len());
        assert!(
            b.train
                .iter()
                .all(|&t| (t as usize) < Tokenizer::Gpt2.vocab())
        );
        let ids = Tokenizer::Gpt2.encode(b"Fellow-Citizens of the Senate");
        assert_eq!(
            tiktoken_rs::r50k_base_singleton().decode(&ids).unwrap(),
            "Fellow-Citizens of the Senate"
        );
    }
}
