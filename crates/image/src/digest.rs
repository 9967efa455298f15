//! Digest-verifying readers and hashing writers.

use std::io::{self, Read, Write};

use crate::error::Error;
use sha2::{Digest as _, Sha256};

/// The only digest algorithm layercrypt writes; reading others is refused.
pub const SHA256_PREFIX: &str = "sha256:";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks that `digest` is `sha256:` followed by 64 lowercase hex digits. Digests are used in
/// file names, so anything else is refused before it reaches a path.
pub fn validate_digest(digest: &str) -> Result<&str, String> {
    let hex = digest
        .strip_prefix(SHA256_PREFIX)
        .ok_or_else(|| format!("digest {digest:?} is not sha256 (the only algorithm supported)"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "digest {digest:?} is not sha256 followed by 64 lowercase hex digits"
        ));
    }
    Ok(hex)
}

/// A reader that hashes what passes through and, at end of stream, fails instead of
/// returning EOF if the size or digest differs from what was expected. It also fails as soon
/// as more bytes than expected arrive.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    expected_digest: String,
    expected_size: u64,
    seen: u64,
    verified: bool,
}

/// An `InvalidData` I/O error that carries [`Error::BlobMismatch`] typed (readers can only
/// return `io::Error`; callers find the kind with `get_ref().downcast_ref::<Error>()`).
pub fn blob_mismatch(digest: &str, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        Error::BlobMismatch {
            digest: digest.to_owned(),
            reason,
        },
    )
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, which must yield exactly `expected_size` bytes hashing to
    /// `expected_digest`.
    pub fn new(inner: R, expected_digest: &str, expected_size: u64) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            expected_digest: expected_digest.to_owned(),
            expected_size,
            seen: 0,
            verified: false,
        }
    }

    fn mismatch(&self, reason: String) -> io::Error {
        blob_mismatch(&self.expected_digest, reason)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            if self.seen != self.expected_size {
                return Err(self.mismatch(format!(
                    "truncated: {} of {} bytes",
                    self.seen, self.expected_size
                )));
            }
            let actual = format!(
                "{SHA256_PREFIX}{}",
                hex::encode(self.hasher.clone().finalize())
            );
            if actual != self.expected_digest {
                return Err(self.mismatch(format!("content has digest {actual}")));
            }
            self.verified = true;
            return Ok(0);
        }
        self.seen += n as u64;
        if self.seen > self.expected_size {
            return Err(self.mismatch(format!("longer than {} bytes", self.expected_size)));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// `sha256:<hex>` and size of everything written so far, and the inner writer.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("{SHA256_PREFIX}{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.written)
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut dyn Read) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn verifies_good_blob() {
        let data = b"hello world".to_vec();
        let d = sha256_digest(&data);
        let mut r = VerifyingReader::new(&data[..], &d, data.len() as u64);
        assert_eq!(read_all(&mut r).expect("verified"), data);
    }

    #[test]
    fn rejects_flipped_truncated_and_long() {
        let data = b"hello world".to_vec();
        let d = sha256_digest(&data);
        let mut flipped = data.clone();
        flipped[3] ^= 1;
        assert!(read_all(&mut VerifyingReader::new(&flipped[..], &d, 11)).is_err());
        assert!(read_all(&mut VerifyingReader::new(&data[..5], &d, 11)).is_err());
        assert!(read_all(&mut VerifyingReader::new(&data[..], &d, 5)).is_err());
    }

    #[test]
    fn validates_digest_syntax() {
        assert!(validate_digest(&sha256_digest(b"")).is_ok());
        assert!(validate_digest("sha256:../../etc/passwd").is_err());
        assert!(validate_digest("sha512:00").is_err());
        assert!(validate_digest(&sha256_digest(b"").to_uppercase()).is_err());
    }
}
