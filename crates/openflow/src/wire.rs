//! Bounds-checked big-endian reading and writing, shared by every message
//! family.
//!
//! Decoding never indexes a slice directly: every read goes through
//! [`Reader`], which refuses to read past its end with a
//! [`DecodeError::Truncated`] naming what was being read. Encoding appends to
//! a caller-owned `Vec<u8>` so one buffer can be reused for a whole stream of
//! messages.

use thiserror::Error;

/// Why bytes could not be decoded into an OpenFlow value.
///
/// Unknown-but-well-formed input (an unknown message type, match field,
/// action or instruction) is *not* an error: it decodes to an explicit
/// `Unknown` value carrying its bytes. These errors are for input that is
/// malformed: truncated, or with lengths that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Fewer bytes were left than the structure being read needs.
    #[error("truncated {what}: needs {needed} bytes, {available} available")]
    Truncated {
        /// The structure or field being read.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A length field is impossible (too small for its own header, not a
    /// multiple of the required alignment, or pointing past the enclosing
    /// structure).
    #[error("bad length {length} in {what}")]
    BadLength {
        /// The structure whose length field is wrong.
        what: &'static str,
        /// The length it claims.
        length: usize,
    },
    /// A value that the protocol forbids (not merely one we do not know).
    #[error("invalid {what}: {value:#x}")]
    InvalidValue {
        /// The field that holds it.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// Structures nested deeper than the decoder allows (for example `ct`
    /// actions inside `ct` actions); the limit keeps hostile input from
    /// exhausting the stack.
    #[error("{what} nested deeper than {limit} levels")]
    TooDeep {
        /// What was nested.
        what: &'static str,
        /// The nesting limit.
        limit: usize,
    },
    /// Bytes were left over after a complete structure.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes {
        /// The structure that was complete.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The encoded structure would not fit its 16-bit length field.
    #[error("{what} would be {length} bytes, more than its length field can hold")]
    TooLong {
        /// The structure being encoded.
        what: &'static str,
        /// The length it would have had.
        length: usize,
    },
    /// A value does not fit the wire format (for example a port name longer
    /// than 15 bytes).
    #[error("{what} cannot be encoded: {reason}")]
    Unencodable {
        /// The field being encoded.
        what: &'static str,
        /// Why it does not fit.
        reason: &'static str,
    },
}

/// A cursor over a byte slice that only ever reads in bounds.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unread bytes, without consuming them.
    pub(crate) fn peek_rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Consumes and returns the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Consumes everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Consumes the next `n` bytes as a reader of their own.
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        self.take(n, what).map(Reader::new)
    }

    pub(crate) fn skip(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        self.take(n, what).map(drop)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Fails unless every byte has been consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                count: self.buf.len(),
            })
        }
    }
}

/// Appending big-endian integers to an output buffer.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
    /// Overwrites the 16-bit length field at `at` with the number of bytes
    /// written since `start`, failing if it does not fit.
    fn patch_len16(&mut self, at: usize, start: usize, what: &'static str) -> Result<(), EncodeError>;
    /// Pads with zeros until the bytes written since `start` are a multiple
    /// of 8, as OpenFlow requires of matches, actions and properties.
    fn pad_to_8(&mut self, start: usize);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
    fn patch_len16(&mut self, at: usize, start: usize, what: &'static str) -> Result<(), EncodeError> {
        let length = self.len() - start;
        let v = u16::try_from(length).map_err(|_| EncodeError::TooLong { what, length })?;
        self[at..at + 2].copy_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn pad_to_8(&mut self, start: usize) {
        let len = self.len() - start;
        self.put_zeros(padding_to_8(len));
    }
}

/// Bytes of padding that bring `len` up to a multiple of 8.
pub(crate) const fn padding_to_8(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// Reads a fixed-size, NUL-padded string field (port names, switch
/// descriptions). Bytes after the first NUL are padding; a field without a
/// NUL is used whole. Bytes that are not UTF-8 become `?` (one character per
/// byte), so the string always fits its field again when re-encoded.
pub(crate) fn read_fixed_str(
    r: &mut Reader<'_>,
    size: usize,
    what: &'static str,
) -> Result<String, DecodeError> {
    let bytes = r.take(size, what)?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let bytes = &bytes[..end];
    Ok(match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes
            .iter()
            .map(|&b| if b.is_ascii() { char::from(b) } else { '?' })
            .collect(),
    })
}

/// Writes `s` into a fixed-size field, NUL-padded. OpenFlow's C strings
/// end with a NUL, but switches accept a field filled to the last byte (and
/// send them), so a string of exactly `size` bytes is written without one.
pub(crate) fn put_fixed_str(
    out: &mut Vec<u8>,
    s: &str,
    size: usize,
    what: &'static str,
) -> Result<(), EncodeError> {
    if s.len() > size || s.as_bytes().contains(&0) {
        return Err(EncodeError::Unencodable {
            what,
            reason: "string longer than its field, or contains NUL",
        });
    }
    out.extend_from_slice(s.as_bytes());
    out.put_zeros(size - s.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_to_read_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("x"), Ok(0x0102));
        assert_eq!(
            r.u16("y"),
            Err(DecodeError::Truncated {
                what: "y",
                needed: 2,
                available: 1
            })
        );
        assert_eq!(r.u8("z"), Ok(3));
        assert!(r.is_empty());
    }

    #[test]
    fn padding_rounds_up_to_eight() {
        assert_eq!(padding_to_8(0), 0);
        assert_eq!(padding_to_8(1), 7);
        assert_eq!(padding_to_8(8), 0);
        assert_eq!(padding_to_8(12), 4);
    }

    #[test]
    fn fixed_strings_round_trip_and_refuse_overflow() {
        let mut out = Vec::new();
        put_fixed_str(&mut out, "br-int", 16, "name").unwrap();
        assert_eq!(out.len(), 16);
        assert_eq!(
            read_fixed_str(&mut Reader::new(&out), 16, "name").unwrap(),
            "br-int"
        );
        assert!(put_fixed_str(&mut out, "0123456789abcdefg", 16, "name").is_err());
    }

    #[test]
    fn fixed_strings_without_nul_or_utf8_still_re_encode() {
        // Found by the fuzzer: a full field, and bytes that are not UTF-8.
        let full = [b'A'; 16];
        let name = read_fixed_str(&mut Reader::new(&full), 16, "name").unwrap();
        let mut out = Vec::new();
        put_fixed_str(&mut out, &name, 16, "name").unwrap();
        assert_eq!(out, full);
        let mut odd = [0xe1u8; 16];
        odd[6] = 0;
        let name = read_fixed_str(&mut Reader::new(&odd), 16, "name").unwrap();
        assert_eq!(name, "??????");
        let mut out = Vec::new();
        put_fixed_str(&mut out, &name, 16, "name").unwrap();
        assert_eq!(read_fixed_str(&mut Reader::new(&out), 16, "name").unwrap(), name);
    }
}
