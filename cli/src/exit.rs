//! Error reporting and exit codes (documented in `--help`).

use std::process::ExitCode;

use layercrypt_client::Error as ClientError;
use layercrypt_image::Error as ImageError;
use layercrypt_ocicrypt::Error as FormatError;

/// What kind of failure an error chain is, for the exit code and the advice line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Other = 1,
    Usage = 2,
    NoKey = 3,
    Integrity = 4,
    NotFound = 5,
}

fn classify_format(e: &FormatError) -> Option<Kind> {
    match e {
        FormatError::NoMatchingKey { .. } | FormatError::UnwrapFailed { .. } => Some(Kind::NoKey),
        FormatError::InvalidMac | FormatError::Truncated { .. } => Some(Kind::Integrity),
        _ => None,
    }
}

fn classify_image(e: &ImageError) -> Option<Kind> {
    match e {
        ImageError::BlobMismatch { .. } => Some(Kind::Integrity),
        ImageError::NotFound(_) | ImageError::Registry { .. } => Some(Kind::NotFound),
        ImageError::Reference { .. } => Some(Kind::Usage),
        _ => None,
    }
}

fn classify(err: &anyhow::Error) -> Kind {
    for cause in err.chain() {
        // `#[error(transparent)]` wrappers do not appear as their own link: look inside.
        let kind = if let Some(e) = cause.downcast_ref::<ClientError>() {
            match e {
                ClientError::Ocicrypt(e) => classify_format(e),
                ClientError::Image(e) => classify_image(e),
                _ => None,
            }
        } else if let Some(e) = cause.downcast_ref::<FormatError>() {
            classify_format(e)
        } else if let Some(e) = cause.downcast_ref::<ImageError>() {
            classify_image(e)
        } else if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            (e.kind() == std::io::ErrorKind::InvalidData
                && e.to_string().contains("does not match its descriptor"))
            .then_some(Kind::Integrity)
        } else {
            None
        };
        if let Some(k) = kind {
            return k;
        }
    }
    Kind::Other
}

fn advice(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::NoKey => Some(
            "give the private key of one of the recipients above with --key (for an X.509 \
             recipient also its certificate, or a PKCS#12 file); `layercrypt inspect` lists them",
        ),
        Kind::Integrity => Some(
            "the image was modified or cut short after it was encrypted; fetch it again from a \
             source you trust. Nothing was written to the destination.",
        ),
        Kind::NotFound => Some("check the image name, tag and platform, and the registry credentials (--creds, --authfile)"),
        Kind::Usage => Some("see `layercrypt --help` for the image name syntax"),
        Kind::Other => None,
    }
}

/// Prints the error chain and advice to stderr; returns the exit code.
#[allow(clippy::print_stderr)]
pub fn report(err: &anyhow::Error) -> ExitCode {
    let kind = classify(err);
    eprintln!("layercrypt: error: {err:#}");
    if let Some(a) = advice(kind) {
        eprintln!("layercrypt: what to do: {a}");
    }
    ExitCode::from(kind as u8)
}
