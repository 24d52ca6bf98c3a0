//! The canonical binary encoding shared by transactions, blocks and the state, and the
//! 32-byte BLAKE2b hash.
//!
//! Integers are little-endian and fixed width; a sequence is a `u32` count then its items;
//! a public key is its 32 bytes. There is exactly one encoding of each value, so hashes of
//! encodings are well defined. Decoding checks every length against the bytes left before
//! allocating, and rejects trailing bytes.

use std::fmt;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use bt_keys::PublicKey;

use crate::error::{Error, Result};

/// A 32-byte BLAKE2b-256 hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// BLAKE2b-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        let mut h = Blake2b::<U32>::new();
        h.update(bytes);
        Hash(h.finalize().into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// From 32 bytes given as a slice.
    pub fn from_slice(b: &[u8]) -> Result<Hash> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| Error::malformed("hash", format!("{} bytes, expected 32", b.len())))?;
        Ok(Hash(arr))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// Appends canonical encodings to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(cap),
        }
    }
    /// One byte.
    pub fn u8(&mut self, x: u8) {
        self.buf.push(x);
    }
    /// A `u16`.
    pub fn u16(&mut self, x: u16) {
        self.buf.extend_from_slice(&x.to_le_bytes());
    }
    /// A `u32`.
    pub fn u32(&mut self, x: u32) {
        self.buf.extend_from_slice(&x.to_le_bytes());
    }
    /// A `u64`.
    pub fn u64(&mut self, x: u64) {
        self.buf.extend_from_slice(&x.to_le_bytes());
    }
    /// An `i128`.
    pub fn i128(&mut self, x: i128) {
        self.buf.extend_from_slice(&x.to_le_bytes());
    }
    /// A sequence length.
    pub fn len(&mut self, n: usize) {
        // Every sequence encoded here is bounded far below 2^32 by the ledger's limits.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    /// Raw bytes, no length.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.raw(b);
    }
    /// A public key.
    pub fn key(&mut self, k: &PublicKey) {
        self.raw(k.as_bytes());
    }
    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical encodings from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, naming it `what` in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::malformed(
                self.what,
                format!("needed {n} more bytes, {} left", self.buf.len()),
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    /// A `u16`.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// An `i128`.
    pub fn i128(&mut self) -> Result<i128> {
        Ok(i128::from_le_bytes(self.array()?))
    }
    /// A sequence length whose items take at least `min_item` bytes each; refuses counts the
    /// remaining bytes cannot hold, so a hostile count cannot make us allocate.
    pub fn len(&mut self, min_item: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(Error::malformed(
                self.what,
                format!("count {n} cannot fit in the {} bytes left", self.buf.len()),
            ));
        }
        Ok(n)
    }
    /// Fixed-size raw bytes.
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.array()
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
    /// A public key; refuses bytes that are not a valid sr25519 point.
    pub fn key(&mut self) -> Result<PublicKey> {
        let b = self.array::<32>()?;
        PublicKey::from_bytes(b)
            .map_err(|e| Error::malformed(self.what, format!("public key: {e}")))
    }
    /// A hash.
    pub fn hash(&mut self) -> Result<Hash> {
        Ok(Hash(self.array()?))
    }
    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::malformed(
                self.what,
                format!("{} trailing bytes", self.buf.len()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let mut w = Writer::default();
        w.u8(7);
        w.u64(1 << 40);
        w.bytes(b"abc");
        let buf = w.finish();
        let mut r = Reader::new(&buf, "test");
        assert_eq!(r.u8().expect("u8"), 7);
        assert_eq!(r.u64().expect("u64"), 1 << 40);
        assert_eq!(r.bytes().expect("bytes"), b"abc");
        r.finish().expect("all read");

        let mut r = Reader::new(&buf[..5], "test");
        r.u8().expect("u8");
        assert!(matches!(r.u64(), Err(Error::Malformed { .. })));

        // A count larger than the bytes left is refused before allocating.
        let huge = u32::MAX.to_le_bytes();
        assert!(matches!(
            Reader::new(&huge, "test").len(1),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            Reader::new(&[1], "test").finish(),
            Err(Error::Malformed { .. })
        ));
    }
}
