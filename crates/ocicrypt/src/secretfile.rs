//! Files that hold secrets (private keys, tokens): one way to write them.
//!
//! [`write_secret_atomic`] is the only writer of secret files on the client side (the CLI's
//! `keygen`, `layercrypt login`'s token store, a worker node's rotated refresh token): the
//! file is created with mode 0600 (never readable by others, not even for a moment between
//! create and chmod), synced, and renamed over the destination, so a crash leaves either the
//! old file or the new one, never a half-written secret.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically with mode 0600 (see the module documentation). The
/// temporary file beside it is removed on failure; the directory is synced after the rename.
pub fn write_secret_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("secret");
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced (best effort: some
        // file systems refuse to sync a directory).
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_0600_replacing_the_old_file_with_nothing_left_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        fs::write(&path, "old").expect("old");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        write_secret_atomic(&path, b"new secret").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"new secret");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["key.pem"]);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The destination is a directory: the rename fails.
        let path = dir.path().join("occupied");
        fs::create_dir(path.join("x").parent().expect("parent")).expect("dir");
        fs::write(path.join("x"), "keep").expect("file");
        assert!(write_secret_atomic(&path, b"secret").is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["occupied"]);
    }
}
