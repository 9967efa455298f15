//! Error reporting and exit codes (documented in `--help`).

use std::process::ExitCode;

use layercrypt_client::Error as ClientError;
use layercrypt_group::error::{ADVICE_ASK_ADMIN, ADVICE_CERTIFICATE, ADVICE_LOGIN};
use layercrypt_group::Error as GroupError;
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
        } else if let Some(e) = cause.downcast_ref::<GroupError>() {
            match e {
                GroupError::CleartextBroker { .. } | GroupError::BrokerUrl(_) => Some(Kind::Usage),
                e => e.is_access_refused().then_some(Kind::NoKey),
            }
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
        Kind::Usage => Some("see `layercrypt --help`"),
        Kind::Other => None,
    }
}

/// Advice for a broker refusal (401/403), found as a typed error or, inside ocicrypt's unwrap
/// error (which keeps its causes as text), by the advice text the group crate writes.
fn broker_advice(err: &anyhow::Error) -> Option<&'static str> {
    const LOGIN: &str = "run `layercrypt login` (or give a fresh token with --token-file, \
         OIDC_ACCESS_TOKEN or --oidc-agent-account) and try again";
    const MEMBER: &str = "ask the group admin to grant you access (`layercrypt group grant`), \
         or check that you use the right network; `layercrypt inspect` shows the group";
    const ADMIN: &str = "use an administrator's token, or the broker's bootstrap admin token \
         with --admin-token-file";
    const CERTIFICATE: &str = "check the --broker-cert certificate (validity, CA, a grant for \
         its subject DN: `layercrypt group show`), or use a token instead";
    let from_text = |causes: &[String]| {
        if causes.iter().any(|c| c.contains(ADVICE_CERTIFICATE)) {
            Some(CERTIFICATE)
        } else if causes.iter().any(|c| c.contains(ADVICE_LOGIN)) {
            Some(LOGIN)
        } else if causes.iter().any(|c| c.contains(ADVICE_ASK_ADMIN)) {
            Some(MEMBER)
        } else {
            None
        }
    };
    for cause in err.chain() {
        let format = match cause.downcast_ref::<ClientError>() {
            Some(ClientError::Ocicrypt(e)) => Some(e),
            _ => cause.downcast_ref::<FormatError>(),
        };
        if let Some(FormatError::UnwrapFailed { causes, .. }) = format {
            if let Some(a) = from_text(causes) {
                return Some(a);
            }
        }
        match cause.downcast_ref::<GroupError>() {
            Some(GroupError::Unauthenticated { .. }) => return Some(LOGIN),
            Some(GroupError::CertificateRefused { .. }) => return Some(CERTIFICATE),
            Some(GroupError::NotMember { .. }) => return Some(MEMBER),
            Some(GroupError::NotAdmin { .. }) => return Some(ADMIN),
            _ => {}
        }
    }
    None
}

/// Prints the error chain and advice to stderr; returns the exit code.
#[allow(clippy::print_stderr)]
pub fn report(err: &anyhow::Error) -> ExitCode {
    let kind = classify(err);
    eprintln!("layercrypt: error: {err:#}");
    let broker = if kind == Kind::NoKey {
        broker_advice(err)
    } else {
        None
    };
    if let Some(a) = broker.or_else(|| advice(kind)) {
        eprintln!("layercrypt: what to do: {a}");
    }
    ExitCode::from(kind as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_refusals_are_no_key_with_their_advice() {
        let e = anyhow::Error::from(GroupError::Unauthenticated {
            broker: "https://b".into(),
        })
        .context("group list");
        assert_eq!(classify(&e), Kind::NoKey);
        assert!(broker_advice(&e).is_some_and(|a| a.contains("layercrypt login")));
        let e = anyhow::Error::from(GroupError::NotAdmin {
            broker: "https://b".into(),
        });
        assert_eq!(classify(&e), Kind::NoKey);
        // Inside ocicrypt's unwrap error the causes are text.
        let member = GroupError::NotMember {
            broker: "https://b".into(),
            group: "vo.example.org".into(),
        };
        let e = anyhow::Error::from(ClientError::Ocicrypt(FormatError::UnwrapFailed {
            wrapped_for: "key provider layercrypt".into(),
            causes: vec![format!("key provider layercrypt: {member}")],
        }))
        .context("decrypting");
        assert_eq!(classify(&e), Kind::NoKey);
        assert!(broker_advice(&e).is_some_and(|a| a.contains("ask the group admin")));
        let e = anyhow::Error::from(GroupError::Unavailable {
            broker: "https://b".into(),
            reason: "503".into(),
        });
        assert_eq!(classify(&e), Kind::Other);
    }
}
