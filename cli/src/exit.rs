//! Error reporting and exit codes (documented in `--help`).

use std::process::ExitCode;

use layercrypt_client::Error as ClientError;
use layercrypt_group::Error as GroupError;
use layercrypt_image::Error as ImageError;
use layercrypt_ocicrypt::Error as FormatError;

/// The bootstrap admin token given with `--admin-token-file` was refused (put as context on a
/// broker's 401, so that the advice is about that file, not about `layercrypt login`).
#[derive(Debug, thiserror::Error)]
#[error("the broker refused the bootstrap admin token in {}", file.display())]
pub struct AdminTokenRefused {
    /// The file.
    pub file: std::path::PathBuf,
}

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
        ImageError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Some(Kind::NotFound)
        }
        ImageError::BlobMismatch { .. } => Some(Kind::Integrity),
        ImageError::NotFound(_) | ImageError::Registry { .. } => Some(Kind::NotFound),
        ImageError::Reference { .. } => Some(Kind::Usage),
        _ => None,
    }
}

/// Calls `f` on every error in `err`: the chain, the typed causes inside ocicrypt's
/// `UnwrapFailed`, and typed errors carried inside `io::Error`s (a blob that does not match its
/// descriptor surfaces from a reader). Errors are classified by type, never by their text.
fn visit(err: &anyhow::Error, f: &mut dyn FnMut(&(dyn std::error::Error + 'static))) {
    fn one(
        e: &(dyn std::error::Error + 'static),
        f: &mut dyn FnMut(&(dyn std::error::Error + 'static)),
    ) {
        f(e);
        let format = match e.downcast_ref::<ClientError>() {
            Some(ClientError::Ocicrypt(fe)) => Some(fe),
            _ => e.downcast_ref::<FormatError>(),
        };
        if let Some(FormatError::UnwrapFailed { causes, .. }) = format {
            for c in causes {
                c.visit(&mut |inner| one_leaf(inner, f));
            }
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            one(inner, f);
        }
    }
    fn one_leaf(
        e: &(dyn std::error::Error + 'static),
        f: &mut dyn FnMut(&(dyn std::error::Error + 'static)),
    ) {
        f(e);
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            one(inner, f);
        }
    }
    for cause in err.chain() {
        one(cause, f);
    }
}

fn classify(err: &anyhow::Error) -> Kind {
    let mut kind = None;
    visit(err, &mut |cause| {
        if kind.is_some() {
            return;
        }
        // `#[error(transparent)]` wrappers do not appear as their own link: look inside.
        kind = if let Some(e) = cause.downcast_ref::<ClientError>() {
            match e {
                ClientError::Ocicrypt(e) => classify_format(e),
                ClientError::Image(e) => classify_image(e),
                ClientError::KeyRead { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Some(Kind::NotFound)
                }
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
        } else {
            None
        };
    });
    kind.unwrap_or(Kind::Other)
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

/// Advice for a broker refusal (401/403), found as a typed error anywhere in the chain
/// (also inside ocicrypt's unwrap error, whose causes stay typed).
fn broker_advice(err: &anyhow::Error) -> Option<&'static str> {
    const LOGIN: &str = "run `layercrypt login` (or give a fresh token with --token-file, \
         OIDC_ACCESS_TOKEN or --oidc-agent-account) and try again";
    const MEMBER: &str = "ask the group admin to grant you access (`layercrypt group grant`), \
         or check that you use the right network; `layercrypt inspect` shows the group";
    const ADMIN: &str = "use an administrator's token, or the broker's bootstrap admin token \
         with --admin-token-file";
    const CERTIFICATE: &str = "check the --broker-cert certificate (validity, CA, a grant for \
         its subject DN: `layercrypt group show`), or use a token instead";
    const ADMIN_TOKEN: &str = "give the file the broker reads as its admin.token_file \
         (--admin-token-file), or leave the option out to use your own token";
    const NO_TOKEN: &str = "run `layercrypt login`, or give a token with --token-file, \
         OIDC_ACCESS_TOKEN or --oidc-agent-account (or a certificate with --broker-cert)";
    const OTHER_BROKER: &str = "the image names a key broker you did not configure; layercrypt \
         sends your token only to yours. Ask whoever published the image which broker holds its \
         keys, and check it before you trust it";
    const NO_BROKER: &str = "give the key broker with --broker URL, LAYERCRYPT_BROKER, or \
         broker = \"https://…\" in ~/.config/layercrypt/config.toml";
    if err.downcast_ref::<AdminTokenRefused>().is_some() {
        return Some(ADMIN_TOKEN);
    }
    let mut advice = None;
    visit(err, &mut |cause| {
        if advice.is_none() {
            advice = match cause.downcast_ref::<GroupError>() {
                Some(GroupError::Unauthenticated { .. }) => Some(LOGIN),
                Some(GroupError::CertificateRefused { .. }) => Some(CERTIFICATE),
                Some(GroupError::NotMember { .. }) => Some(MEMBER),
                Some(GroupError::NotAdmin { .. }) => Some(ADMIN),
                Some(GroupError::Token(_)) => Some(NO_TOKEN),
                Some(GroupError::BrokerNotAllowed { .. }) => Some(OTHER_BROKER),
                Some(GroupError::NoBroker { .. }) => Some(NO_BROKER),
                _ => None,
            };
        }
    });
    advice
}

/// True if writing to stdout failed because its reader went away (`| head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let mut broken = false;
    visit(err, &mut |cause| {
        let kind = match cause.downcast_ref::<std::io::Error>() {
            Some(e) => Some(e.kind()),
            // serde_json's error does not give its io::Error as a source.
            None => cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind),
        };
        broken |= kind == Some(std::io::ErrorKind::BrokenPipe);
    });
    broken
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
        // Inside ocicrypt's unwrap error the causes stay typed.
        let member = GroupError::NotMember {
            broker: "https://b".into(),
            group: "vo.example.org".into(),
        };
        let e = anyhow::Error::from(ClientError::Ocicrypt(FormatError::UnwrapFailed {
            wrapped_for: "key provider layercrypt".into(),
            causes: vec![FormatError::Wrapper {
                name: "layercrypt".into(),
                source: Box::new(member),
            }],
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

    #[test]
    fn a_blob_mismatch_inside_an_io_error_is_an_integrity_failure() {
        // Readers can only return io::Error; the kind travels inside it, typed.
        let io = layercrypt_image::digest::blob_mismatch("sha256:ab", "truncated".into());
        let e = anyhow::Error::from(io).context("copying layer 1");
        assert_eq!(classify(&e), Kind::Integrity);
        // The same words in an untyped error are just words.
        let e = anyhow::anyhow!("blob sha256:ab does not match its descriptor: truncated");
        assert_eq!(classify(&e), Kind::Other);
    }

    #[test]
    fn cleartext_broker_is_a_usage_error() {
        let e = anyhow::Error::from(GroupError::CleartextBroker {
            broker: "http://b.example.org".into(),
        });
        assert_eq!(classify(&e), Kind::Usage);
    }

    #[test]
    fn advice_fits_the_cause() {
        let in_unwrap = |e: GroupError| {
            anyhow::Error::from(ClientError::Ocicrypt(FormatError::UnwrapFailed {
                wrapped_for: "key provider layercrypt".into(),
                causes: vec![FormatError::Wrapper {
                    name: "layercrypt".into(),
                    source: Box::new(e),
                }],
            }))
        };
        // No token: log in, not "give the private key".
        let e = in_unwrap(GroupError::Token("no token".into()));
        assert_eq!(classify(&e), Kind::NoKey);
        let a = broker_advice(&e).expect("advice");
        assert!(
            a.contains("layercrypt login") && !a.contains("--key"),
            "{a}"
        );
        // A broker the image chose: never "trust it".
        let e = in_unwrap(GroupError::BrokerNotAllowed {
            broker: "https://evil.example.org".into(),
            allowed: "https://b.example.org".into(),
        });
        let a = broker_advice(&e).expect("advice");
        assert!(
            a.contains("did not configure") && !a.contains("--broker"),
            "{a}"
        );
        // The bootstrap admin token file was refused: about that file, not about login.
        let e = anyhow::Error::from(GroupError::Unauthenticated {
            broker: "https://b".into(),
        })
        .context(AdminTokenRefused {
            file: "/etc/broker/admin-token".into(),
        });
        assert_eq!(classify(&e), Kind::NoKey);
        let a = broker_advice(&e).expect("advice");
        assert!(
            a.contains("admin.token_file") && !a.contains("login"),
            "{a}"
        );
        assert!(format!("{e:#}").contains("/etc/broker/admin-token"));
    }
}
