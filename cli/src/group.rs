//! Group recipients in the CLI: the broker setup, `login`/`logout`, `group …` and `audit`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use layercrypt_group::client::{
    check_rfc3339, check_transport, AuditEvent, AuditQuery, BrokerClient, BrokerTls, GroupInfo,
    HttpBrokers, NewGrant, Principal, GRID_CA_DIR,
};
use layercrypt_group::config::{UserConfig, ENV_BROKER};
use layercrypt_group::login::{self, LoginParams, SystemClock, DEFAULT_CLIENT_ID, DEFAULT_ISSUER};
use layercrypt_group::payload::GroupName;
use layercrypt_group::token::{self, read_token_file, AccessToken, TokenOptions, TokenStore};
use layercrypt_group::wrap::GroupKeyWrapper;
use layercrypt_proto::text::escape;
use zeroize::Zeroizing;

use crate::cli::{AdminArgs, AuditArgs, BrokerArgs, GrantArgs, GroupCommand, LoginArgs};
use crate::table::Table;

/// The user's broker, config and token sources, from flags, environment and config.toml.
pub struct BrokerSetup {
    /// The user config.
    pub config: UserConfig,
    /// The broker: --broker, else LAYERCRYPT_BROKER, else config.toml.
    pub broker: Option<String>,
    token: TokenOptions,
    /// --broker-cert: unwrap with this certificate instead of a token.
    certificate: Option<BrokerTls>,
    /// The CAs trusted for the broker's TLS certificate beyond the system's.
    roots: BrokerTls,
}

impl BrokerSetup {
    /// Reads config.toml and the environment. A plain `http://` broker that is not on this
    /// machine is refused unless `insecure` (`--insecure`).
    pub fn new(args: &BrokerArgs, insecure: bool) -> Result<Self> {
        let path = UserConfig::default_path()?;
        let config = UserConfig::load(&path)?;
        let env = std::env::var(ENV_BROKER).ok();
        let broker = config.broker(args.broker.as_deref(), env.as_deref());
        if let Some(b) = &broker {
            check_transport(b, insecure)?;
        }
        let mut token = TokenOptions::new(TokenStore::new(TokenStore::default_path()?));
        token.token_file = args.token_file.as_deref().map(crate::paths::expand_path);
        token.oidc_agent_account = args.oidc_agent_account.clone();
        // The CA files are read only when a broker will be talked to: encrypt/decrypt/inspect
        // without one must not pay for reading the grid CA directory at every start.
        let roots = if broker.is_some() {
            broker_roots(args, &config)?
        } else {
            BrokerTls::default()
        };
        let certificate = match args.broker_cert.as_deref().map(crate::paths::expand_path) {
            Some(cert) => Some(client_certificate(
                roots.clone(),
                &cert,
                &args
                    .broker_key
                    .as_deref()
                    .map_or_else(|| cert.clone(), crate::paths::expand_path),
                args.broker_key_passphrase_file
                    .as_deref()
                    .map(crate::paths::expand_path),
            )?),
            None => None,
        };
        Ok(Self {
            config,
            broker,
            token,
            certificate,
            roots,
        })
    }

    /// The user's access token, from the first source that has one.
    pub fn token(&self) -> layercrypt_group::Result<AccessToken> {
        user_token(&self.token)
    }

    /// The group key wrapper: recipients from the configured broker, unwrapping only through
    /// it. The token is read only when a group layer is unwrapped.
    pub fn wrapper(&self, image: Option<&str>) -> Result<GroupKeyWrapper> {
        let api = match &self.certificate {
            Some(tls) => HttpBrokers::certificate_only(tls.clone()),
            None => {
                let opts = self.token.clone();
                HttpBrokers::new(Box::new(move || user_token(&opts))).with_tls(self.roots.clone())
            }
        };
        let mut w = GroupKeyWrapper::new(Arc::new(api));
        if let Some(b) = &self.broker {
            w = w.with_broker(b).context("the configured broker")?;
        }
        if let Some(i) = image {
            w = w.with_image(i);
        }
        Ok(w)
    }

    fn broker_client(&self, admin: &AdminArgs) -> Result<BrokerClient> {
        let broker = self
            .broker
            .as_deref()
            .ok_or_else(|| layercrypt_group::Error::NoBroker {
                config: UserConfig::default_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            })?;
        let token = match &admin.admin_token_file {
            Some(f) => read_token_file(&crate::paths::expand_path(f))?,
            None => self.token()?,
        };
        Ok(BrokerClient::with_tls(
            broker,
            layercrypt_group::client::DEFAULT_TIMEOUT,
            &self.roots,
        )?
        .with_token(token))
    }
}

/// The CAs trusted for the broker's TLS certificate beyond the system's: `--broker-ca`
/// (`LAYERCRYPT_BROKER_CA`), else `broker_ca` in config.toml; and the grid CA directory when
/// it exists (IGTF CAs issue EGI sites' host certificates).
fn broker_roots(args: &BrokerArgs, config: &UserConfig) -> Result<BrokerTls> {
    let mut tls = BrokerTls::default();
    if let Some(file) = args.broker_ca.as_ref().or(config.broker_ca.as_ref()) {
        let file = crate::paths::expand_path(file);
        let pem =
            read_small_file(&file).with_context(|| format!("--broker-ca {}", file.display()))?;
        tls = tls
            .with_root_certificates(&pem)
            .with_context(|| format!("--broker-ca {}", file.display()))?;
    }
    let grid = Path::new(GRID_CA_DIR);
    if grid.is_dir() {
        tls = tls.with_ca_dir(grid)?;
    }
    Ok(tls)
}

/// A small file (a CA bundle), read up to 4 MiB.
fn read_small_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(4 * 1024 * 1024)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The TLS client identity of `--broker-cert`/`--broker-key`: the certificate file as it is
/// (leaf first, then any chain: an end-entity certificate, or an RFC 3820 proxy followed by
/// the certificate it was made from) and the private key, decrypted if need be and re-encoded
/// as unencrypted PKCS#8 PEM in zeroized memory, which is what the TLS client takes.
fn client_certificate(
    roots: BrokerTls,
    cert: &Path,
    key: &Path,
    passphrase_file: Option<PathBuf>,
) -> Result<BrokerTls> {
    use layercrypt_ocicrypt::keys::{
        load_certificates, needs_passphrase, parse_key_material, KeyMaterial,
    };
    use std::io::Read as _;
    /// Key files are small; a larger one is not a key.
    const MAX_KEY_FILE: u64 = 1024 * 1024;
    let certs =
        load_certificates(cert).with_context(|| format!("--broker-cert {}", cert.display()))?;
    let Some(leaf) = certs.first() else {
        bail!("--broker-cert {}: no certificate in it", cert.display());
    };
    let mut bytes = Zeroizing::new(Vec::new());
    std::fs::File::open(key)
        .and_then(|f| f.take(MAX_KEY_FILE).read_to_end(&mut bytes))
        .with_context(|| format!("--broker-key {}", key.display()))?;
    let pass = if needs_passphrase(&bytes) {
        let ask = crate::run::passphrase_asker(passphrase_file);
        Some(ask(key).with_context(|| format!("--broker-key {}", key.display()))?)
    } else {
        None
    };
    let material = parse_key_material(&bytes, pass.as_ref(), &key.display().to_string())
        .with_context(|| format!("--broker-key {}", key.display()))?;
    let private = material
        .iter()
        .find_map(|m| match m {
            KeyMaterial::Private(k) if k.matches_certificate(leaf) => Some(k),
            _ => None,
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--broker-key {}: holds no private key for the certificate in {}",
                key.display(),
                cert.display()
            )
        })?;
    let mut pem = Zeroizing::new(
        private
            .expose_secret()
            .private_key_to_pem_pkcs8()
            .context("re-encoding the --broker-key private key")?,
    );
    // The chain as parsed above, leaf first (the file is not read twice).
    for c in &certs {
        pem.extend_from_slice(&c.x509().to_pem().context("re-encoding --broker-cert")?);
    }
    Ok(roots.with_client_certificate(&pem)?)
}

fn user_token(opts: &TokenOptions) -> layercrypt_group::Result<AccessToken> {
    let env = |k: &str| std::env::var(k).ok();
    let refresh = |s: &token::StoredTokens| login::refresh(s, token::unix_now());
    let (t, source) = token::access_token(opts, &env, token::unix_now(), &refresh)?;
    tracing::debug!(%source, "using access token");
    Ok(t)
}

/// `layercrypt login`.
pub fn login(setup: &BrokerSetup, args: &LoginArgs) -> Result<()> {
    let params = LoginParams {
        issuer: args
            .issuer
            .clone()
            .or_else(|| setup.config.issuer.clone())
            .unwrap_or_else(|| DEFAULT_ISSUER.into()),
        client_id: args
            .client_id
            .clone()
            .or_else(|| setup.config.client_id.clone())
            .unwrap_or_else(|| DEFAULT_CLIENT_ID.into()),
        scopes: args.scopes.clone(),
    };
    let tokens = login::device_login(&params, &mut std::io::stderr(), &SystemClock)?;
    setup.token.store.save(&tokens)?;
    crate::run::status(
        false,
        &format!(
            "logged in at {}; tokens kept in {}{}",
            params.issuer,
            setup.token.store.path().display(),
            if tokens.refresh_token.is_some() {
                ""
            } else {
                " (no refresh token: log in again in an hour)"
            }
        ),
    );
    Ok(())
}

/// `layercrypt logout`.
pub fn logout(setup: &BrokerSetup) -> Result<()> {
    setup.token.store.remove()?;
    crate::run::status(
        false,
        &format!("removed {}", setup.token.store.path().display()),
    );
    Ok(())
}

fn name(n: &str) -> Result<GroupName> {
    n.parse().map_err(anyhow::Error::from)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn print_group(g: &GroupInfo, json: bool) -> Result<()> {
    if json {
        return print_json(g);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "group {} (current key version {}, created {})",
        escape(g.name.as_str()),
        g.current_version,
        escape(&g.created)
    )?;
    writeln!(out)?;
    let mut versions = Table::new(&["VERSION", "CREATED", "RECIPIENT"]);
    for v in &g.versions {
        let mark = if v.version == g.current_version {
            "*"
        } else {
            ""
        };
        versions.row(&[&format!("{}{mark}", v.version), &v.created, &v.recipient]);
    }
    versions.write(&mut out)?;
    writeln!(out)?;
    if g.grants.is_empty() {
        writeln!(out, "no grants: nobody can decrypt")?;
        return Ok(());
    }
    let mut grants = Table::new(&["GRANT", "WHO", "NETWORKS", "EXPIRES"]);
    for gr in &g.grants {
        let nets = if gr.networks.is_empty() {
            "any".to_owned()
        } else {
            gr.networks.join(",")
        };
        grants.row(&[
            &gr.id,
            &gr.principal(),
            &nets,
            gr.expires.as_deref().unwrap_or("never"),
        ]);
    }
    grants.write(&mut out)?;
    Ok(())
}

/// A 401 for the bootstrap admin token is about that file: say so (typed, for the advice).
fn admin_refusal(e: anyhow::Error, admin: &AdminArgs) -> anyhow::Error {
    let refused = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<layercrypt_group::Error>(),
            Some(layercrypt_group::Error::Unauthenticated { .. })
        )
    });
    match &admin.admin_token_file {
        Some(file) if refused => e.context(crate::exit::AdminTokenRefused {
            file: crate::paths::expand_path(file),
        }),
        _ => e,
    }
}

/// `layercrypt group …`.
pub fn group(setup: &BrokerSetup, cmd: &GroupCommand) -> Result<()> {
    let admin = match cmd {
        GroupCommand::Create { admin, .. }
        | GroupCommand::List { admin }
        | GroupCommand::Show { admin, .. }
        | GroupCommand::Delete { admin, .. }
        | GroupCommand::Revoke { admin, .. }
        | GroupCommand::Rotate { admin, .. } => admin,
        GroupCommand::Grant(a) => &a.admin,
    };
    group_command(setup, cmd).map_err(|e| admin_refusal(e, admin))
}

fn group_command(setup: &BrokerSetup, cmd: &GroupCommand) -> Result<()> {
    match cmd {
        GroupCommand::Create { name: n, admin } => {
            let g = setup.broker_client(admin)?.create_group(&name(n)?)?;
            print_group(&g, admin.json)?;
        }
        GroupCommand::List { admin } => {
            let groups = setup.broker_client(admin)?.list_groups()?;
            if admin.json {
                return print_json(&groups);
            }
            let mut table = Table::new(&["GROUP", "VERSION", "GRANTS", "CREATED"]);
            for g in &groups {
                table.row(&[
                    g.name.as_str(),
                    &g.current_version.to_string(),
                    &g.grants.len().to_string(),
                    &g.created,
                ]);
            }
            table.write(&mut std::io::stdout().lock())?;
        }
        GroupCommand::Show { name: n, admin } => {
            let g = setup.broker_client(admin)?.group(&name(n)?)?;
            print_group(&g, admin.json)?;
        }
        GroupCommand::Delete {
            name: n,
            yes,
            admin,
        } => {
            if !yes {
                bail!("deleting group {n} destroys its keys: layers encrypted for it can no longer be decrypted; add --yes");
            }
            setup.broker_client(admin)?.delete_group(&name(n)?)?;
            crate::run::status(false, &format!("deleted group {n}"));
        }
        GroupCommand::Grant(a) => grant(setup, a)?,
        GroupCommand::Revoke {
            name: n,
            grant_id,
            admin,
        } => {
            setup
                .broker_client(admin)?
                .remove_grant(&name(n)?, grant_id)?;
            crate::run::status(false, &format!("removed grant {grant_id} of group {n}"));
        }
        GroupCommand::Rotate { name: n, admin } => {
            let g = setup.broker_client(admin)?.rotate(&name(n)?)?;
            print_group(&g, admin.json)?;
        }
    }
    Ok(())
}

fn grant(setup: &BrokerSetup, a: &GrantArgs) -> Result<()> {
    let principal = match (&a.entitlement, &a.subject, &a.dn) {
        (Some(e), None, None) => Principal::Entitlement {
            value: e.clone(),
            prefix: a.prefix,
        },
        (None, Some(s), None) => Principal::Subject(s.clone()),
        (None, None, Some(d)) => Principal::Dn(d.clone()),
        _ => bail!("give exactly one of --entitlement, --subject, --dn"),
    };
    if let Some(e) = &a.expires {
        check_rfc3339("--expires", e)?;
    }
    let grant = NewGrant {
        principal,
        networks: a.networks.clone(),
        expires: a.expires.clone(),
    };
    let g = setup
        .broker_client(&a.admin)?
        .add_grant(&name(&a.name)?, &grant)?;
    if a.admin.json {
        return print_json(&g);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "granted {} access to group {} (grant {})",
        g.principal(),
        a.name,
        g.id
    )?;
    Ok(())
}

/// `layercrypt audit`.
pub fn audit(setup: &BrokerSetup, a: &AuditArgs) -> Result<()> {
    audit_command(setup, a).map_err(|e| admin_refusal(e, &a.admin))
}

fn audit_command(setup: &BrokerSetup, a: &AuditArgs) -> Result<()> {
    if let Some(s) = &a.since {
        check_rfc3339("--since", s)?;
    }
    let query = AuditQuery {
        group: a.group.clone(),
        subject: a.subject.clone(),
        since: a.since.clone(),
        limit: a.limit,
        kind: a.kind.clone(),
    };
    let events = setup.broker_client(&a.admin)?.audit(&query)?;
    if a.admin.json {
        return print_json(&events);
    }
    render_audit(&mut std::io::stdout().lock(), &events)?;
    Ok(())
}

/// The audit table. Every field can carry text a caller chose (a payload's broker URL in a
/// reason, a subject, an image name): it is escaped so that no control sequence reaches the
/// admin's terminal, where it could erase or forge lines; `--json` stays exact.
fn render_audit(out: &mut impl Write, events: &[AuditEvent]) -> std::io::Result<()> {
    let mut table = Table::new(&["TIME", "KIND", "DECISION", "GROUP", "KEY", "WHO", "REASON"]);
    for e in events {
        let who = e.subject.as_deref().or(e.dn.as_deref()).unwrap_or("-");
        let version = e
            .key_version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into());
        let who = match (e.credential.as_deref(), who) {
            (Some("bootstrap_token"), _) => "(bootstrap admin token)",
            (_, who) => who,
        };
        let reason = match e.client.as_deref() {
            Some(c) => format!("{} (from {c})", e.reason),
            None => e.reason.clone(),
        };
        table.row(&[
            &e.time,
            e.kind(),
            &e.decision,
            e.group.as_deref().unwrap_or("-"),
            &version,
            who,
            &reason,
        ]);
    }
    table.write(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_table_escapes_what_callers_chose() {
        // A payload naming a "broker" with terminal controls ends up in the deny reason; on
        // an admin's terminal `\x1b[1A\x1b[2K` would erase the line above and forge another
        // (issue 8.7).
        let evil = r"payload names broker https://b\u001b[1A\u001b[2K\rALLOW forged\u009b31m";
        let events: Vec<AuditEvent> = serde_json::from_str(&format!(
            r#"[{{"time":"2026-12-07T20:00:00Z","decision":"deny","subject":"mallory\u001b]0;x\u0007",
                 "group":"vo.example.org","reason":"{evil}","client":"192.0.2.1"}}]"#
        ))
        .expect("events");
        let mut out = Vec::new();
        render_audit(&mut out, &events).expect("render");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("\\u{1b}[1A\\u{1b}[2K\\rALLOW forged"),
            "{text}"
        );
        assert!(text.contains("mallory\\u{1b}]0;x\\u{7}"), "{text}");
    }
}
