//! The node's local keys: every file under `--decryption-keys-path DIR` (JWE private keys,
//! X.509 certificate + key pairs, PKCS#12 bundles, JWKs), plus keys passed in the payload.
//!
//! As imgcrypt's `ctd-decoder`, files that cannot be used (unreadable, not a key, protected by
//! a passphrase) are skipped with a debug log, so that one bad file does not stop a node.

use std::path::{Path, PathBuf};

use layercrypt_ocicrypt::keys::{load_key_file, needs_passphrase, parse_key_material, KeyMaterial};
use layercrypt_ocicrypt::DecryptConfig;
use tracing::debug;

use crate::payload::PayloadKeys;

/// Most files looked at under the key directory.
pub const MAX_KEY_FILES: usize = 1000;
/// Deepest subdirectory level followed.
const MAX_DEPTH: usize = 8;

/// What was found in the key directory (for messages: never key material).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyDirReport {
    /// The directory.
    pub dir: Option<PathBuf>,
    /// Whether it could be listed.
    pub readable: bool,
    /// Files that held at least one private key or certificate.
    pub usable_files: usize,
    /// Files skipped.
    pub skipped_files: usize,
}

impl KeyDirReport {
    /// Human summary, e.g. `2 usable key files in /etc/containerd/ocicrypt/keys`.
    pub fn describe(&self) -> String {
        match &self.dir {
            None => "no --decryption-keys-path given".into(),
            Some(d) if !self.readable => format!("key directory {} cannot be read", d.display()),
            Some(d) => format!(
                "{} usable key file(s) in {}{}",
                self.usable_files,
                d.display(),
                if self.skipped_files > 0 {
                    format!(
                        ", {} skipped (LAYERCRYPT_LOG=debug says why)",
                        self.skipped_files
                    )
                } else {
                    String::new()
                }
            ),
        }
    }
}

fn add_material(dc: &mut DecryptConfig, material: Vec<KeyMaterial>) -> bool {
    let mut useful = false;
    for m in material {
        match m {
            KeyMaterial::Private(k) => {
                dc.private_keys.push(k);
                useful = true;
            }
            KeyMaterial::Certificate(c) => {
                dc.certificates.push(c);
                useful = true;
            }
            KeyMaterial::Public(_) => {}
        }
    }
    useful
}

/// Adds every usable key under `dir` (recursively, symlinks followed, bounded) to `dc`.
pub fn load_key_dir(dir: &Path, dc: &mut DecryptConfig) -> KeyDirReport {
    let mut report = KeyDirReport {
        dir: Some(dir.to_owned()),
        ..Default::default()
    };
    let mut stack = vec![(dir.to_owned(), 0usize)];
    let mut seen = 0usize;
    while let Some((d, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                debug!(dir = %d.display(), error = %e, "cannot list key directory");
                continue;
            }
        };
        if d == dir {
            report.readable = true;
        }
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            seen += 1;
            if seen > MAX_KEY_FILES {
                debug!(dir = %dir.display(), "more than {MAX_KEY_FILES} files; the rest is ignored");
                return report;
            }
            if path.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((path, depth + 1));
                }
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) if needs_passphrase(&bytes) => {
                    debug!(file = %path.display(), "skipped: protected by a passphrase");
                    report.skipped_files += 1;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(file = %path.display(), error = %e, "skipped: unreadable");
                    report.skipped_files += 1;
                    continue;
                }
            }
            match load_key_file(&path, None).map(|m| add_material(dc, m)) {
                Ok(true) => {
                    debug!(file = %path.display(), "key file loaded");
                    report.usable_files += 1;
                }
                Ok(false) => {
                    debug!(file = %path.display(), "skipped: no private key or certificate");
                    report.skipped_files += 1;
                }
                Err(e) => {
                    debug!(file = %path.display(), error = %e, "skipped: not a key file");
                    report.skipped_files += 1;
                }
            }
        }
    }
    report
}

/// Adds the keys of the payload (`ctr-enc --key`): private keys with their passwords by
/// index, and certificates. Unusable ones are skipped with a debug log.
pub fn add_payload_keys(keys: &PayloadKeys, dc: &mut DecryptConfig) -> usize {
    let mut added = 0;
    for (i, k) in keys.private_keys.iter().enumerate() {
        let pass = keys.passwords.get(i).filter(|p| !p.is_empty());
        match parse_key_material(k.expose_secret(), pass, &format!("payload privkeys[{i}]"))
            .map(|m| add_material(dc, m))
        {
            Ok(true) => added += 1,
            Ok(false) => debug!(index = i, "payload key skipped: no private key"),
            Err(e) => debug!(index = i, error = %e, "payload key skipped"),
        }
    }
    for (i, c) in keys.x509s.iter().enumerate() {
        match parse_key_material(c, None, &format!("payload x509s[{i}]")) {
            Ok(m) => {
                add_material(dc, m);
            }
            Err(e) => debug!(index = i, error = %e, "payload certificate skipped"),
        }
    }
    added
}
