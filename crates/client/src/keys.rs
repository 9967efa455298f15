//! Decryption keys as the user gives them: key files (any format `layercrypt-ocicrypt`
//! reads, passphrase-protected ones through a callback), `provider:NAME[:PARAM]`, or the grid
//! default `~/.globus/usercert.pem` + `~/.globus/userkey.pem`.

use std::path::{Path, PathBuf};

use layercrypt_ocicrypt::keys::{load_key_file, needs_passphrase, KeyMaterial};
use layercrypt_ocicrypt::{DecryptConfig, SecretBytes};
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// Asks for the passphrase of a file (prompt, `--passphrase-file`, …).
pub type PassphraseSource<'a> = &'a dyn Fn(&Path) -> std::io::Result<SecretBytes>;

/// The grid convention: `~/.globus/usercert.pem` and `~/.globus/userkey.pem`, if both exist.
pub fn grid_default_keys() -> Option<Vec<PathBuf>> {
    let globus = dirs::home_dir()?.join(".globus");
    let (cert, key) = (globus.join("usercert.pem"), globus.join("userkey.pem"));
    (cert.is_file() && key.is_file()).then(|| vec![cert, key])
}

/// Adds a key file's private keys and certificates to `dc`.
pub fn add_key_file(
    dc: &mut DecryptConfig,
    path: &Path,
    passphrase: PassphraseSource<'_>,
) -> Result<()> {
    let key_err = |reason: String| Error::Key {
        path: path.to_owned(),
        reason,
    };
    let bytes = read_small(path)?;
    let material = if needs_passphrase(&bytes) {
        let pass = passphrase(path).map_err(|e| key_err(format!("no passphrase: {e}")))?;
        load_key_file(path, Some(&pass))?
    } else {
        load_key_file(path, None)?
    };
    let mut useful = 0;
    for m in material {
        match m {
            KeyMaterial::Private(k) => {
                dc.private_keys.push(k);
                useful += 1;
            }
            KeyMaterial::Certificate(c) => {
                dc.certificates.push(c);
                useful += 1;
            }
            KeyMaterial::Public(_) => {
                warn!(file = %path.display(), "public key ignored: decryption needs the private key");
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    if useful == 0 {
        return Err(key_err(
            "holds no private key or certificate (a public key cannot decrypt; give the private key)"
                .into(),
        ));
    }
    debug!(file = %path.display(), "key file loaded");
    Ok(())
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    let read_err = |source| Error::KeyRead {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let key_err = |reason: &str| Error::Key {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !meta.is_file() {
        return Err(key_err("not a regular file"));
    }
    if meta.len() > 1024 * 1024 {
        return Err(key_err("larger than 1 MiB; not a key file"));
    }
    std::fs::read(path).map_err(read_err)
}

/// Builds the decryption configuration from `--key` values (files or
/// `provider:NAME[:PARAM]`). With no value, uses the grid default if present.
pub fn decrypt_config(keys: &[String], passphrase: PassphraseSource<'_>) -> Result<DecryptConfig> {
    let mut dc = DecryptConfig::default();
    let defaults;
    let files: Vec<String> = if keys.is_empty() {
        defaults = grid_default_keys().unwrap_or_default();
        defaults.iter().map(|p| p.display().to_string()).collect()
    } else {
        keys.to_vec()
    };
    for k in &files {
        if let Some(rest) = k.strip_prefix("provider:") {
            let (name, param) = match rest.split_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (rest, None),
            };
            dc.provider_params
                .entry(name.to_owned())
                .or_default()
                .extend(param.map(|p| p.as_bytes().to_vec()));
            continue;
        }
        add_key_file(&mut dc, Path::new(k), passphrase)?;
    }
    Ok(dc)
}
