//! `~` in paths the shell does not expand: inside a spec (`x509:~/.globus/usercert.pem`,
//! `oci:~/images/app:1.0`) or after `=` (`--key=~/alice.pem`). Only `~` and `~/…` (the
//! user's own home, from `$HOME`); `~user` is left alone, as is everything when `$HOME` is
//! unset. Written by hand: a dozen lines, and the crates that do it also expand variables,
//! which a path inside an image reference must not get.

use std::path::{Path, PathBuf};

/// `path` with a leading `~` or `~/` replaced by `$HOME`.
pub fn expand_home(path: &str) -> String {
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        return path.to_owned();
    };
    let home = Path::new(&home);
    if path == "~" {
        return home.display().to_string();
    }
    match path.strip_prefix("~/") {
        Some(rest) => home.join(rest).display().to_string(),
        None => path.to_owned(),
    }
}

/// A `SCHEME:VALUE` spec with `~` expanded in VALUE when the scheme names a file: `jwe:`,
/// `x509:`, `pkcs7:` (recipients), `oci:`, `oci-archive:` (images). Other specs (`group:`,
/// `provider:`, `docker://`) are returned unchanged.
pub fn expand_in_spec(spec: &str) -> String {
    match spec.split_once(':') {
        Some((scheme @ ("jwe" | "x509" | "pkcs7" | "oci" | "oci-archive"), rest)) => {
            format!("{scheme}:{}", expand_home(rest))
        }
        _ => expand_home(spec),
    }
}

/// A path argument with `~` expanded.
pub fn expand_path(path: &Path) -> PathBuf {
    match path.to_str() {
        Some(s) => PathBuf::from(expand_home(s)),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_in_specs_and_paths() {
        let home = std::env::var("HOME").expect("HOME is set in tests");
        assert_eq!(
            expand_in_spec("x509:~/.globus/usercert.pem"),
            format!("x509:{home}/.globus/usercert.pem")
        );
        assert_eq!(
            expand_in_spec("oci:~/images/app:1.0"),
            format!("oci:{home}/images/app:1.0")
        );
        assert_eq!(expand_in_spec("~/alice.pem"), format!("{home}/alice.pem"));
        for unchanged in [
            "group:~vo",
            "provider:~/x",
            "docker://registry.example.org/~x/y:1",
            "jwe:~bob/key.pem",
            "jwe:/abs/~/x.pem",
        ] {
            assert_eq!(expand_in_spec(unchanged), unchanged);
        }
        assert_eq!(expand_path(Path::new("~")), PathBuf::from(&home));
    }
}
