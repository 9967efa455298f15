//! Image references in skopeo's transport syntax.
//!
//! # How `oci:` and `oci-archive:` references are split
//!
//! Exactly as skopeo 1.9 / containers/image do (`oci/internal/oci_util.go`,
//! `splitPathAndImageNonWindows`): the path ends at the **first** `:` after the transport, and
//! everything after it is the image name (the `org.opencontainers.image.ref.name`), so
//! `oci:/tmp/img:example.com/app:1.0` is directory `/tmp/img`, name `example.com/app:1.0`.
//! The name must match c/image's ref-name grammar (components of letters and digits joined by
//! one of `-._:@+` or `--`, components separated by `/`); an empty name (`oci:DIR:`) means no
//! name. A path containing `:` therefore cannot be written, in skopeo or here; use a symlink
//! or a relative path without the colon. Following skopeo keeps one string naming the same
//! image in both tools.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::archive::{ArchiveDest, ArchiveSource};
use crate::digest::validate_digest;
use crate::error::{Error, Result};
use crate::layout::{LayoutDest, LayoutSource};
use crate::registry::{RegistryDest, RegistrySource};
use crate::transport::{ImageDest, ImageSource, TransportOptions};

/// Where an image lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:DIR[:TAG]`: an OCI image layout directory. Without a tag, the layout must hold
    /// exactly one image (as a source); as a destination the image is added untagged.
    OciLayout {
        /// The directory.
        dir: PathBuf,
        /// `org.opencontainers.image.ref.name` of the image in `index.json`.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: an OCI layout in a tar file.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// Tag inside the archive.
        tag: Option<String>,
    },
    /// `docker://HOST/REPO[:TAG|@DIGEST]`: a registry over the OCI distribution API.
    Registry {
        /// The reference after `docker://` (Docker Hub names are normalised by the registry
        /// transport: `alpine` → `docker.io/library/alpine:latest`).
        reference: String,
    },
}

const SYNTAX: &str = "expected oci:DIR[:NAME], oci-archive:FILE[:NAME] or \
                      docker://[HOST[:PORT]/]REPO[:TAG|@sha256:HEX]";

fn bad(reference: &str, reason: impl Into<String>) -> Error {
    Error::Reference {
        reference: reference.to_owned(),
        reason: reason.into(),
    }
}

/// c/image's `refRegexp` for OCI layout image names.
fn is_oci_ref_name(name: &str) -> bool {
    name.split('/').all(|component| {
        let b = component.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric()
        {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            // A separator run between two alphanumeric runs: one of `-._:@+`, or `--`.
            let start = i;
            while i < b.len() && !b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let sep = &b[start..i];
            let ok = matches!(
                sep,
                [b'-' | b'.' | b'_' | b':' | b'@' | b'+'] | [b'-', b'-']
            );
            if !ok {
                return false;
            }
        }
        true
    })
}

/// Docker's tag grammar.
fn is_docker_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Docker's repository path component grammar: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn is_docker_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_lower_alnum(b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        let ok = matches!(sep, [b'.'] | [b'_'] | [b'_', b'_']) || sep.iter().all(|c| *c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `HOST[:PORT]` or `[IPv6][:PORT]`.
fn is_docker_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return false;
        };
        if h.is_empty() || !h.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => (None, p.strip_prefix(':').map(Some).unwrap_or(Some(""))),
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(h) = host {
        let labels_ok = h.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        });
        if !labels_ok {
            return false;
        }
    }
    match port {
        None => true,
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()),
    }
}

fn parse_registry(input: &str, rest: &str) -> Result<ImageRef> {
    if rest.is_empty() {
        return Err(bad(input, format!("no image after docker://; {SYNTAX}")));
    }
    let name_tag = match rest.split_once('@') {
        Some((n, d)) => {
            validate_digest(d).map_err(|e| bad(input, format!("{e}; {SYNTAX}")))?;
            n
        }
        None => rest,
    };
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        if !is_docker_tag(t) {
            return Err(bad(
                input,
                format!("tag {t:?} is not [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}; {SYNTAX}"),
            ));
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components[0];
    let has_domain = components.len() > 1
        && (first.contains('.')
            || first.contains(':')
            || first.starts_with('[')
            || first == "localhost");
    if has_domain {
        if !is_docker_domain(first) {
            return Err(bad(
                input,
                format!("registry host {first:?} is not HOST[:PORT]; {SYNTAX}"),
            ));
        }
        components.remove(0);
    }
    if let Some(c) = components.iter().find(|c| !is_docker_path_component(c)) {
        return Err(bad(
            input,
            format!(
                "repository component {c:?} must be lowercase letters and digits separated by \
                 '.', '_', '__' or '-'; {SYNTAX}"
            ),
        ));
    }
    if name.len() > 255 {
        return Err(bad(input, "repository name longer than 255 characters"));
    }
    Ok(ImageRef::Registry {
        reference: rest.to_owned(),
    })
}

fn parse_path_and_name(input: &str, rest: &str, what: &str) -> Result<(PathBuf, Option<String>)> {
    // The first ':' ends the path, as in containers/image (see the module docs).
    let (path, name) = rest.split_once(':').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(bad(input, format!("empty {what} path; {SYNTAX}")));
    }
    if name.is_empty() {
        return Ok((PathBuf::from(path), None));
    }
    if !is_oci_ref_name(name) {
        return Err(bad(
            input,
            format!(
                "the {what} path ends at the first ':' (as in skopeo), so {name:?} is taken as the \
                 image name, which must be letters and digits joined by one of -._:@+ or --, \
                 components separated by '/'; paths containing ':' are not supported; {SYNTAX}"
            ),
        ));
    }
    Ok((PathBuf::from(path), Some(name.to_owned())))
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(rest) = s.strip_prefix("docker://") {
            return parse_registry(s, rest);
        }
        let Some((transport, rest)) = s.split_once(':') else {
            return Err(bad(s, format!("no transport; {SYNTAX}")));
        };
        match transport {
            "oci" => {
                let (dir, tag) = parse_path_and_name(s, rest, "directory")?;
                Ok(ImageRef::OciLayout { dir, tag })
            }
            "oci-archive" => {
                let (file, tag) = parse_path_and_name(s, rest, "archive")?;
                Ok(ImageRef::OciArchive { file, tag })
            }
            "docker" => Err(bad(
                s,
                format!("the docker transport is written docker://…; {SYNTAX}"),
            )),
            other => Err(bad(s, format!("unsupported transport {other:?}; {SYNTAX}"))),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (transport, path, tag) = match self {
            ImageRef::Registry { reference } => return write!(f, "docker://{reference}"),
            ImageRef::OciLayout { dir, tag } => ("oci", dir, tag),
            ImageRef::OciArchive { file, tag } => ("oci-archive", file, tag),
        };
        write!(f, "{transport}:{}", path.display())?;
        if let Some(t) = tag {
            write!(f, ":{t}")?;
        }
        Ok(())
    }
}

impl ImageRef {
    /// Opens the image for reading.
    pub fn open_source(&self, opts: &TransportOptions) -> Result<Box<dyn ImageSource>> {
        Ok(match self {
            ImageRef::OciLayout { dir, tag } => Box::new(LayoutSource::open(dir, tag.as_deref())?),
            ImageRef::OciArchive { file, tag } => {
                Box::new(ArchiveSource::open(file, tag.as_deref())?)
            }
            ImageRef::Registry { reference } => Box::new(RegistrySource::open(reference, opts)?),
        })
    }

    /// Opens the destination for writing. Nothing is visible there before
    /// [`ImageDest::commit`].
    pub fn open_dest(&self, opts: &TransportOptions) -> Result<Box<dyn ImageDest>> {
        Ok(match self {
            ImageRef::OciLayout { dir, tag } => Box::new(LayoutDest::open(dir, tag.as_deref())?),
            ImageRef::OciArchive { file, tag } => {
                Box::new(ArchiveDest::open(file, tag.as_deref())?)
            }
            ImageRef::Registry { reference } => Box::new(RegistryDest::open(reference, opts)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> ImageRef {
        let r: ImageRef = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(r.to_string(), s, "Display round trip");
        r
    }

    fn err(s: &str) -> String {
        match s.parse::<ImageRef>() {
            Ok(r) => panic!("{s} parsed as {r:?}"),
            Err(e @ Error::Reference { .. }) => e.to_string(),
            Err(e) => panic!("{s}: wrong error {e}"),
        }
    }

    #[test]
    fn oci_layout_references() {
        assert_eq!(
            ok("oci:/tmp/img"),
            ImageRef::OciLayout {
                dir: "/tmp/img".into(),
                tag: None
            }
        );
        assert_eq!(
            ok("oci:rel/dir:v1.0"),
            ImageRef::OciLayout {
                dir: "rel/dir".into(),
                tag: Some("v1.0".into())
            }
        );
        // skopeo splits at the first colon: the rest is a full ref name.
        assert_eq!(
            ok("oci:/tmp/img:example.com/app:1.0"),
            ImageRef::OciLayout {
                dir: "/tmp/img".into(),
                tag: Some("example.com/app:1.0".into())
            }
        );
        assert_eq!(
            ok("oci-archive:/tmp/a.tar:latest"),
            ImageRef::OciArchive {
                file: "/tmp/a.tar".into(),
                tag: Some("latest".into())
            }
        );
        // An empty name is no name.
        assert_eq!(
            "oci:d:".parse::<ImageRef>().expect("ok"),
            ImageRef::OciLayout {
                dir: "d".into(),
                tag: None
            }
        );
    }

    #[test]
    fn oci_bad_references_explain_the_syntax() {
        // A path with a colon: the part after it is not a valid name.
        let e = err("oci:/tmp/a:b/../c");
        assert!(e.contains("first ':'") && e.contains("oci:DIR"), "{e}");
        err("oci::tag");
        err("oci:/x:_bad");
        err("oci:/x:a//b");
        err("oci:/x:a b");
        err("oci-archive:");
        err("nope:/x");
        err("/just/a/path");
        let e = err("docker:alpine");
        assert!(e.contains("docker://"), "{e}");
    }

    #[test]
    fn registry_references() {
        for s in [
            "docker://alpine",
            "docker://alpine:3.19",
            "docker://library/alpine",
            "docker://localhost:5000/a/b:t",
            "docker://127.0.0.1:5000/x",
            "docker://[::1]:5000/x:y",
            "docker://quay.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "docker://Registry.Example.com/a__b/c-d.e:tag_1",
        ] {
            assert_eq!(ok(s), ImageRef::Registry { reference: s["docker://".len()..].to_owned() });
        }
    }

    #[test]
    fn registry_bad_references() {
        err("docker://");
        err("docker://Alpine");
        err("docker://alpine:");
        err("docker://alpine:-x");
        err("docker://a/b@sha256:1234");
        err("docker://a/b@md5:0123456789abcdef0123456789abcdef");
        err("docker://host:port/x");
        err("docker://a//b");
        err(&format!("docker://a:{}", "x".repeat(129)));
    }

    #[test]
    fn ref_name_grammar() {
        for good in ["a", "A1", "a-b", "a--b", "a.b_c+d@e:f", "x/y/z"] {
            assert!(is_oci_ref_name(good), "{good}");
        }
        for badname in ["", "-a", "a-", "a---b", "a..b", "a/", "/a", "a b", "é"] {
            assert!(!is_oci_ref_name(badname), "{badname}");
        }
    }
}
