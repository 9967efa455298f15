//! Maps parsed arguments to library calls.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use layercrypt_client::decrypt::DecryptHandler;
use layercrypt_client::encrypt::EncryptHandler;
use layercrypt_client::job::Job;
use layercrypt_client::recipients::{encrypt_config, removal_matcher, RecipientSpec};
use layercrypt_client::rewrap::RewrapHandler;
use layercrypt_client::selection::LayerSelection;
use layercrypt_client::{inspect, keys};
use layercrypt_image::copy::{CopyOptions, PlatformSelection};
use layercrypt_image::transport::TransportOptions;
use layercrypt_image::ImageRef;
use layercrypt_ocicrypt::keywrap::keyprovider::load_config_from_env;
use layercrypt_ocicrypt::layer::{Rewrap, Wrappers};
use layercrypt_ocicrypt::{EncryptConfig, SecretBytes};

use layercrypt_ocicrypt::spec::PROVIDER_LAYERCRYPT;

use crate::cli::{Cli, Command, KeyArgs, TransportArgs};
use crate::group::{self, BrokerSetup};
use crate::progress::Bars;

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    let insecure = cli.insecure;
    let setup = || BrokerSetup::new(&cli.broker, insecure);
    match &cli.command {
        Command::Encrypt(a) => {
            let job = job(&a.copy.src, &a.copy.dst, &a.copy.transport, insecure, quiet)?;
            let specs = parse_specs(&a.recipients)?;
            let ec = encrypt_config(&specs)?;
            let wrappers = wrappers(&setup()?, &ec, None)?;
            let selection = LayerSelection::new(a.copy.layers.clone());
            let report = job
                .run(&EncryptHandler::new(&wrappers, &ec, &selection))
                .with_context(|| format!("encrypting {} to {}", a.copy.src, a.copy.dst))?;
            status(
                quiet,
                &format!(
                    "encrypted {} layer(s); {} written ({})",
                    report.transformed, a.copy.dst, report.top_digest
                ),
            );
        }
        Command::Decrypt(a) => {
            let job = job(&a.copy.src, &a.copy.dst, &a.copy.transport, insecure, quiet)?;
            let dc = decrypt_keys(&a.keys)?;
            let wrappers = wrappers(&setup()?, &EncryptConfig::default(), Some(&a.copy.src))?;
            let selection = LayerSelection::new(a.copy.layers.clone());
            let report = job
                .run(&DecryptHandler::new(&wrappers, &dc, &selection))
                .with_context(|| format!("decrypting {} to {}", a.copy.src, a.copy.dst))?;
            if report.transformed == 0 {
                tracing::warn!("the image has no encrypted layer; it was copied as it is");
            }
            status(
                quiet,
                &format!(
                    "decrypted {} layer(s); {} written ({})",
                    report.transformed, a.copy.dst, report.top_digest
                ),
            );
        }
        Command::Rewrap(a) => {
            if a.add.is_empty() && a.remove.is_empty() {
                bail!("nothing to do: give --add-recipient and/or --remove-recipient");
            }
            let job = job(&a.copy.src, &a.copy.dst, &a.copy.transport, insecure, quiet)?;
            let add = if a.add.is_empty() {
                None
            } else {
                Some(encrypt_config(&parse_specs(&a.add)?)?)
            };
            let dc = if add.is_some() {
                decrypt_keys(&a.keys)?
            } else {
                Default::default()
            };
            let remove = removal_matcher(&parse_specs(&a.remove)?)?;
            let wrappers = wrappers(
                &setup()?,
                add.as_ref().unwrap_or(&EncryptConfig::default()),
                Some(&a.copy.src),
            )?;
            let selection = LayerSelection::new(a.copy.layers.clone());
            let rewrap = Rewrap {
                add: add.as_ref(),
                remove: if a.remove.is_empty() {
                    None
                } else {
                    Some(&remove)
                },
                remove_all: a.remove_all,
            };
            let report = job
                .run(&RewrapHandler::new(&wrappers, &dc, rewrap, &selection))
                .with_context(|| format!("re-wrapping {} to {}", a.copy.src, a.copy.dst))?;
            if report.rewritten == 0 {
                tracing::warn!("the image has no encrypted layer; nothing was re-wrapped");
            }
            status(
                quiet,
                &format!(
                    "re-wrapped {} layer(s); {} written ({})",
                    report.rewritten, a.copy.dst, report.top_digest
                ),
            );
        }
        Command::Inspect(a) => {
            let src: ImageRef = crate::paths::expand_in_spec(&a.src).parse()?;
            let wrappers = wrappers(&setup()?, &EncryptConfig::default(), None)?;
            let report = inspect::inspect_image(
                &src,
                &transport(&a.transport, insecure)?,
                &wrappers,
                &a.certs
                    .iter()
                    .map(|c| crate::paths::expand_path(c))
                    .collect::<Vec<_>>(),
            )
            .with_context(|| format!("inspecting {}", a.src))?;
            let mut out = std::io::stdout().lock();
            if a.json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                write!(out, "{report}")?;
            }
        }
        Command::Keygen(a) => keygen(&a.kind, &a.out, a.force)?,
        Command::Login(a) => group::login(&setup()?, a)?,
        Command::Logout => group::logout(&setup()?)?,
        Command::Group(c) => group::group(&setup()?, c)?,
        Command::Audit(a) => group::audit(&setup()?, a)?,
    }
    Ok(())
}

#[allow(clippy::print_stderr)]
pub(crate) fn status(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("{msg}");
    }
}

fn parse_specs(values: &[String]) -> Result<Vec<RecipientSpec>> {
    values
        .iter()
        .map(|v| {
            crate::paths::expand_in_spec(v)
                .parse()
                .map_err(anyhow::Error::from)
        })
        .collect()
}

/// JWE, PKCS#7, the configured key providers and the built-in `layercrypt` provider for group
/// recipients. The built-in one replaces a `layercrypt` provider from
/// OCICRYPT_KEYPROVIDER_CONFIG only when a broker is configured or a group recipient is given.
fn wrappers(setup: &BrokerSetup, ec: &EncryptConfig, image: Option<&str>) -> Result<Wrappers> {
    let providers = load_config_from_env().context("reading OCICRYPT_KEYPROVIDER_CONFIG")?;
    let external = providers.contains_key(PROVIDER_LAYERCRYPT);
    let mut wrappers = Wrappers::new().with_providers(providers);
    let group_recipient = ec.providers.iter().any(|p| p.name == PROVIDER_LAYERCRYPT);
    if group_recipient && setup.broker.is_none() {
        return Err(layercrypt_group::Error::NoBroker {
            config: layercrypt_group::config::UserConfig::default_path()?
                .display()
                .to_string(),
        }
        .into());
    }
    if setup.broker.is_some() || group_recipient || !external {
        wrappers.push(Box::new(setup.wrapper(image)?));
    }
    Ok(wrappers)
}

fn transport(t: &TransportArgs, insecure: bool) -> Result<TransportOptions> {
    Ok(TransportOptions {
        insecure,
        creds: t.creds.clone(),
        auth_file: t.authfile.as_deref().map(crate::paths::expand_path),
    })
}

fn job(src: &str, dst: &str, t: &TransportArgs, insecure: bool, quiet: bool) -> Result<Job> {
    let src: ImageRef = crate::paths::expand_in_spec(src).parse()?;
    let dst: ImageRef = crate::paths::expand_in_spec(dst).parse()?;
    let platforms = match &t.platform {
        None => PlatformSelection::All,
        Some(p) => PlatformSelection::Only(parse_platform(p)?),
    };
    let copy = CopyOptions {
        platforms,
        convert_to_oci: true,
        progress: Bars::new(quiet)
            .map(|b| Arc::new(b) as Arc<dyn layercrypt_image::progress::Progress>),
    };
    Ok(Job {
        src,
        dst,
        transport: transport(t, insecure)?,
        copy,
    })
}

fn parse_platform(p: &str) -> Result<oci_spec::image::Platform> {
    let parts: Vec<&str> = p.split('/').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|s| s.is_empty()) {
        bail!("--platform {p:?}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64 or linux/arm64/v8");
    }
    let mut b = oci_spec::image::PlatformBuilder::default()
        .os(parts[0])
        .architecture(parts[1]);
    if let Some(v) = parts.get(2) {
        b = b.variant(*v);
    }
    Ok(b.build()?)
}

fn decrypt_keys(k: &KeyArgs) -> Result<layercrypt_ocicrypt::DecryptConfig> {
    let ask = passphrase_asker(k.passphrase_file.as_deref().map(crate::paths::expand_path));
    let files: Vec<String> = k
        .keys
        .iter()
        .map(|f| crate::paths::expand_in_spec(f))
        .collect();
    let dc = keys::decrypt_config(&files, &ask)?;
    if dc.private_keys.is_empty() && dc.provider_params.is_empty() {
        tracing::info!("no decryption key given (--key) and no ~/.globus/userkey.pem; only the broker and key providers can help");
    }
    Ok(dc)
}

/// Passphrases of encrypted key files: the first line of `passfile`, else a prompt on the
/// terminal, else an error saying which option to give.
pub fn passphrase_asker(
    passfile: Option<std::path::PathBuf>,
) -> impl Fn(&Path) -> std::io::Result<SecretBytes> {
    move |path: &Path| -> std::io::Result<SecretBytes> {
        if let Some(f) = &passfile {
            let file = std::fs::File::open(f)?;
            let mut line = zeroize::Zeroizing::new(String::new());
            std::io::BufReader::new(file).read_line(&mut line)?;
            let trimmed = line.trim_end_matches(['\n', '\r']);
            return Ok(SecretBytes::from_slice(trimmed.as_bytes()));
        }
        if !std::io::stdin().is_terminal() {
            return Err(std::io::Error::other(
                "the key is encrypted; give its passphrase file (--passphrase-file, or --broker-key-passphrase-file for --broker-key): no terminal to ask on",
            ));
        }
        let pass = zeroize::Zeroizing::new(rpassword::prompt_password(format!(
            "Passphrase for {}: ",
            path.display()
        ))?);
        Ok(SecretBytes::from_slice(pass.as_bytes()))
    }
}

fn keygen(kind: &str, out: &Path, force: bool) -> Result<()> {
    let kind: layercrypt_ocicrypt::keys::KeyKind = kind
        .parse()
        .map_err(|e| anyhow::anyhow!("--type {kind}: {e}"))?;
    let (private, public) = layercrypt_ocicrypt::keys::generate_keypair(kind)?;
    let priv_path = out.with_extension("pem");
    let pub_path = out.with_extension("pub.pem");
    for p in [&priv_path, &pub_path] {
        if p.exists() && !force {
            bail!("{} exists; use --force to overwrite it", p.display());
        }
    }
    // The thumbprint is what `inspect` shows for a JWE recipient: it ties a key file to it.
    write_private(&priv_path, private.expose_secret())?;
    std::fs::write(&pub_path, public).with_context(|| format!("writing {}", pub_path.display()))?;
    let thumbprint = layercrypt_ocicrypt::keys::load_public_key(&pub_path)
        .and_then(|k| layercrypt_ocicrypt::keys::jwk_thumbprint(k.pkey()))?;
    status(
        false,
        &format!(
            "private key: {} (keep it secret)\npublic key:  {} (encrypt with --recipient jwe:{})\n\
             thumbprint:  {thumbprint} (how `layercrypt inspect` names this key)",
            priv_path.display(),
            pub_path.display(),
            pub_path.display()
        ),
    );
    Ok(())
}

/// Writes a private key with mode 0600, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    layercrypt_ocicrypt::secretfile::write_secret_atomic(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}
