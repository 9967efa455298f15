//! A PEM splitter: finds the `-----BEGIN …-----` / `-----END …-----` blocks of a text, with
//! their RFC 1421 headers (`Proc-Type`, `DEK-Info`) and base64 body. Text outside blocks
//! (`openssl x509 -text` output, `Bag Attributes`) is ignored, as OpenSSL does.

use base64::Engine as _;
use zeroize::Zeroizing;

/// One PEM block.
pub(super) struct Block {
    /// The label between `BEGIN ` and `-----`.
    pub label: String,
    /// RFC 1421 headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body with all whitespace removed (base64 of possibly secret DER).
    pub body: Zeroizing<String>,
}

impl Block {
    /// The value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for legacy-encrypted PEM (`Proc-Type: 4,ENCRYPTED`).
    pub fn is_legacy_encrypted(&self) -> bool {
        self.header("Proc-Type")
            .is_some_and(|v| v.trim().ends_with("ENCRYPTED"))
    }

    /// True for a legacy-encrypted block that has what decryption needs (a `DEK-Info` header
    /// and a body), so that damaged files are not blamed on the passphrase.
    pub fn is_well_formed_legacy(&self) -> bool {
        self.is_legacy_encrypted()
            && self.header("DEK-Info").is_some()
            && self.decode().is_ok_and(|d| !d.is_empty())
    }

    /// The body decoded from base64, in zeroizing memory.
    pub fn decode(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(self.body.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| format!("PEM block {:?} has an invalid base64 body", self.label))
    }

    /// The block re-assembled as PEM text (for OpenSSL's legacy-encrypted PEM reader).
    pub fn to_pem(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(self.body.len() * 2 + 200));
        out.push_str(&format!("-----BEGIN {}-----\n", self.label));
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\n"));
        }
        if !self.headers.is_empty() {
            out.push('\n');
        }
        for chunk in self.body.as_bytes().chunks(64) {
            // The body is ASCII base64 (checked when split), so chunks are valid UTF-8.
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str(&format!("-----END {}-----\n", self.label));
        out
    }
}

/// True if the text looks like PEM.
pub(super) fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Splits a PEM text into blocks. Errors name the problem, never the content.
pub(super) fn blocks(bytes: &[u8]) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut in_body = false;
    for raw in bytes.split(|&b| b == b'\n') {
        let line = trim(raw);
        match current.as_mut() {
            None => {
                if let Some(label) = marker(line, b"-----BEGIN ") {
                    current = Some(Block {
                        label,
                        headers: Vec::new(),
                        body: Zeroizing::new(String::new()),
                    });
                    in_body = false;
                }
            }
            Some(block) => {
                if let Some(label) = marker(line, b"-----END ") {
                    if label != block.label {
                        return Err(format!(
                            "PEM block BEGIN {:?} is closed by END {label:?}",
                            block.label
                        ));
                    }
                    out.extend(current.take());
                } else if marker(line, b"-----BEGIN ").is_some() {
                    return Err(format!(
                        "PEM block {:?} is truncated (no END line before the next BEGIN)",
                        block.label
                    ));
                } else if !in_body && line.contains(&b':') {
                    let text = std::str::from_utf8(line).map_err(|_| {
                        format!("PEM block {:?} has a non-text header", block.label)
                    })?;
                    let (k, v) = text.split_once(':').unwrap_or((text, ""));
                    block
                        .headers
                        .push((k.trim().to_owned(), v.trim().to_owned()));
                } else if line.is_empty() {
                    in_body = in_body || !block.headers.is_empty();
                } else {
                    in_body = true;
                    for &b in line {
                        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' {
                            block.body.push(char::from(b));
                        } else if !b.is_ascii_whitespace() {
                            return Err(format!(
                                "PEM block {:?} has an invalid base64 body",
                                block.label
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(block) = current {
        return Err(format!(
            "PEM block {:?} is truncated (no END line)",
            block.label
        ));
    }
    Ok(out)
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &line[start..end]
}

/// The label of a `-----BEGIN X-----` / `-----END X-----` line.
fn marker(line: &[u8], prefix: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(prefix)?.strip_suffix(b"-----")?;
    let label = std::str::from_utf8(rest).ok()?;
    label
        .bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ')
        .then(|| label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_blocks_with_headers_and_text_around() {
        let text = b"Bag Attributes\n  friendlyName: x\n-----BEGIN RSA PRIVATE KEY-----\r\n\
            Proc-Type: 4,ENCRYPTED\r\nDEK-Info: AES-256-CBC,00FF\r\n\r\nAAAA\r\nBBBB\r\n\
            -----END RSA PRIVATE KEY-----\r\nsubject=/CN=x\n-----BEGIN CERTIFICATE-----\nQUJD\n\
            -----END CERTIFICATE-----\n";
        let blocks = blocks(text).expect("valid");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "RSA PRIVATE KEY");
        assert!(blocks[0].is_legacy_encrypted());
        assert_eq!(blocks[0].header("dek-info"), Some("AES-256-CBC,00FF"));
        assert_eq!(blocks[0].body.as_str(), "AAAABBBB");
        assert_eq!(blocks[1].label, "CERTIFICATE");
        assert_eq!(&*blocks[1].decode().expect("base64"), b"ABC");
        assert!(!blocks[1].is_legacy_encrypted());
    }

    #[test]
    fn rejects_truncated_and_mismatched_blocks() {
        assert!(blocks(b"-----BEGIN PRIVATE KEY-----\nAAAA\n").is_err());
        assert!(blocks(b"-----BEGIN A-----\nAAAA\n-----END B-----\n").is_err());
        assert!(
            blocks(b"-----BEGIN A-----\nAA\n-----BEGIN A-----\nAA\n-----END A-----\n").is_err()
        );
        assert!(blocks(b"-----BEGIN A-----\nAA*A\n-----END A-----\n").is_err());
        assert!(blocks(b"no pem here").expect("no blocks").is_empty());
    }
}
