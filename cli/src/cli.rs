//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Encrypt container images per layer, on your machine, before they reach a registry.
///
/// Images are named with skopeo's transports: oci:DIR[:TAG], oci-archive:FILE[:TAG],
/// docker://HOST/REPO[:TAG|@DIGEST]. The format is containers/ocicrypt's, so skopeo, podman,
/// buildah, containerd/imgcrypt and CRI-O can decrypt what layercrypt encrypts, and the
/// other way round.
#[derive(Debug, Parser)]
#[command(name = "layercrypt", version, max_term_width = 100, after_help = EXIT_CODES)]
pub struct Cli {
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// More log output on stderr (repeat for more); RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Allow plain HTTP to registries and to a key broker that are not on this machine (test
    /// setups only: images, tokens and layer keys then cross the network in clear).
    #[arg(long, global = true)]
    pub insecure: bool,

    #[command(flatten)]
    pub broker: BrokerArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Exit codes, shown in `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other error
  2  usage error
  3  no key can decrypt a layer (none given fits, or the key broker refused access)
  4  integrity failure: a layer, blob or annotation was tampered with or truncated
  5  image, tag, platform or file not found, or the registry refused";

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Encrypt an image's layers for recipients.
    Encrypt(EncryptArgs),
    /// Decrypt an image's encrypted layers.
    Decrypt(DecryptArgs),
    /// Add or remove recipients of encrypted layers without re-encrypting their data.
    Rewrap(RewrapArgs),
    /// Show per layer whether it is encrypted and who can decrypt it.
    Inspect(InspectArgs),
    /// Generate a key pair for JWE recipients.
    Keygen(KeygenArgs),
    /// Log in at the OIDC issuer (EGI Check-in) with the device flow; keeps the tokens for
    /// the key broker in ~/.config/layercrypt/tokens.json.
    Login(LoginArgs),
    /// Forget the tokens kept by `layercrypt login`.
    Logout,
    /// Manage groups at the key broker (administrators).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Query the key broker's audit log (administrators).
    Audit(AuditArgs),
}

/// The key broker and the token for it (group recipients).
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Key broker URL (overrides LAYERCRYPT_BROKER and broker in ~/.config/layercrypt/config.toml).
    /// On decryption, layers may only be unwrapped through this broker.
    #[arg(long, global = true, value_name = "URL")]
    pub broker: Option<String>,

    /// Read the broker access token from this file (first line) instead of
    /// $OIDC_ACCESS_TOKEN, oidc-agent or `layercrypt login`.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Get the access token from oidc-agent (`oidc-token ACCOUNT`).
    #[arg(
        long,
        global = true,
        value_name = "ACCOUNT",
        env = "OIDC_AGENT_ACCOUNT"
    )]
    pub oidc_agent_account: Option<String>,

    /// Authenticate to the broker with this X.509 certificate (PEM: an RCAuth or other IGTF
    /// user or robot certificate, optionally followed by its chain) instead of a token; the
    /// broker grants by its subject DN. An RFC 3820 proxy (e.g. RCAuth's) works too: give the
    /// proxy file, which holds the proxy, its key and the certificate it was made from.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "LAYERCRYPT_BROKER_CERT"
    )]
    pub broker_cert: Option<PathBuf>,

    /// The private key of --broker-cert (PEM, DER or PKCS#12; passphrase-protected keys are
    /// asked for). Default: the --broker-cert file itself.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "LAYERCRYPT_BROKER_KEY"
    )]
    pub broker_key: Option<PathBuf>,

    /// Read the passphrase of --broker-key from this file (first line) instead of prompting.
    #[arg(long, global = true, value_name = "FILE")]
    pub broker_key_passphrase_file: Option<PathBuf>,

    /// Trust the CA certificates (PEM) in this file for the broker's TLS certificate, in
    /// addition to the system's (default: broker_ca in config.toml; on grid hosts the CAs in
    /// /etc/grid-security/certificates are trusted too).
    #[arg(long, global = true, value_name = "FILE", env = "LAYERCRYPT_BROKER_CA")]
    pub broker_ca: Option<PathBuf>,
}

/// `layercrypt login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// OIDC issuer (default: issuer in config.toml, else EGI Check-in production).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,

    /// OAuth public client id (default: client_id in config.toml, else layercrypt-cli).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// Scopes to ask for.
    #[arg(long, value_name = "SCOPES", default_value = layercrypt_group::login::DEFAULT_SCOPES)]
    pub scopes: String,
}

/// Admin credentials and output format.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The bootstrap admin token file of the broker (its --admin-token-file); default: your
    /// own token, which must carry the broker's admin entitlement.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `layercrypt group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group (and its first key).
    Create {
        /// Group name, e.g. vo.example.org.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the groups.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a group: key versions and grants.
    Show {
        /// Group name.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete a group and its keys: layers encrypted for it can no longer be decrypted.
    Delete {
        /// Group name.
        name: String,
        /// Really delete.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Grant access to a group's keys.
    Grant(GrantArgs),
    /// Remove a grant (ids as shown by `layercrypt group show`).
    Revoke {
        /// Group name.
        name: String,
        /// Grant id.
        grant_id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a new key version current (older versions still decrypt).
    Rotate {
        /// Group name.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `layercrypt group grant`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("principal").required(true).args(["entitlement", "subject", "dn"])))]
pub struct GrantArgs {
    /// Group name.
    pub name: String,

    /// An entitlement, e.g. urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu.
    #[arg(long, value_name = "E")]
    pub entitlement: Option<String>,

    /// Match every entitlement that starts with --entitlement at a component boundary: end it
    /// with ':' (all roles and subgroups), ':role=' (all roles of the group) or '#'.
    #[arg(long, requires = "entitlement")]
    pub prefix: bool,

    /// A subject (voperson_id, else sub), e.g. 0123…@egi.eu.
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,

    /// A certificate subject DN, e.g. /DC=eu/DC=rcauth/…/CN=Jane Doe 7ews….
    #[arg(long, value_name = "DN")]
    pub dn: Option<String>,

    /// Only from this client network (CIDR). Repeatable.
    #[arg(long = "network", value_name = "CIDR")]
    pub networks: Vec<String>,

    /// Grant expires at this time (RFC 3339, e.g. 2027-01-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub expires: Option<String>,

    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `layercrypt audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this group.
    #[arg(long, value_name = "G")]
    pub group: Option<String>,

    /// Only this subject.
    #[arg(long, value_name = "S")]
    pub subject: Option<String>,

    /// Only events since this time (RFC 3339).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,

    /// At most this many events (the newest).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Only this kind: unwrap (releases and denials), unauthenticated (refused before
    /// authentication, repeated ones summarised) or admin (group, grant and key changes).
    #[arg(long, value_name = "KIND", value_parser = clap::builder::PossibleValuesParser::new(layercrypt_group::client::AUDIT_KINDS))]
    pub kind: Option<String>,

    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Where images come from and go to.
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// Registry credentials USER:PASSWORD (else the auth file).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "LAYERCRYPT_CREDS",
        hide_env_values = true
    )]
    pub creds: Option<String>,

    /// Registry auth file (default: $REGISTRY_AUTH_FILE, containers auth.json, ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,

    /// Only this platform of a multi-platform image (os/arch[/variant]); default: all.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

/// Keys for decryption.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// A private key, certificate or bundle (PEM, DER, PKCS#12, JWK), or provider:NAME[:PARAM].
    /// Repeatable. Default: ~/.globus/usercert.pem and ~/.globus/userkey.pem if present.
    /// `--decryption-key` as in skopeo.
    #[arg(
        long = "key",
        short = 'k',
        visible_alias = "decryption-key",
        value_name = "FILE"
    )]
    pub keys: Vec<String>,

    /// Read passphrases for encrypted keys from this file (first line) instead of prompting.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// What every copying command (encrypt, decrypt, rewrap) takes: a layer selection, the
/// transport options, the source and the destination.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Only this layer (0-based; negative counts from the end, -1 is the last). Repeatable;
    /// default every layer.
    #[arg(
        long = "layer",
        short = 'l',
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub layers: Vec<i64>,

    #[command(flatten)]
    pub transport: TransportArgs,

    /// Source image.
    pub src: String,
    /// Destination image.
    pub dst: String,
}

/// `layercrypt encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Who can decrypt: jwe:PUBKEY, x509:CERT (or pkcs7:CERT), provider:NAME[:PARAM],
    /// group:NAME (members of a key-broker group; one group per call). Repeatable.
    /// `--encryption-key` as in skopeo (same syntax).
    #[arg(
        long = "recipient",
        short = 'r',
        visible_alias = "encryption-key",
        value_parser = recipient_spec,
        value_name = "SCHEME:VALUE",
        required = true
    )]
    pub recipients: Vec<String>,

    #[command(flatten)]
    pub copy: CopyArgs,
}

/// `layercrypt decrypt`.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub keys: KeyArgs,

    #[command(flatten)]
    pub copy: CopyArgs,
}

/// `layercrypt rewrap`.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    #[command(flatten)]
    pub keys: KeyArgs,

    /// Recipient to add (needs a --key that opens the layers). Repeatable.
    #[arg(long = "add-recipient", short = 'a', value_name = "SCHEME:VALUE", value_parser = recipient_spec)]
    pub add: Vec<String>,

    /// Recipient to remove (JWE keys are matched by thumbprint, certificates by issuer and
    /// serial, providers by name). Repeatable.
    #[arg(long = "remove-recipient", short = 'd', value_name = "SCHEME:VALUE", value_parser = recipient_spec)]
    pub remove: Vec<String>,

    /// Remove every existing recipient; only the added ones remain.
    #[arg(long, requires = "add")]
    pub remove_all: bool,

    #[command(flatten)]
    pub copy: CopyArgs,
}

/// `layercrypt inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// Certificates or keys to name recipients with (subject DN and validity of a
    /// certificate that a layer is wrapped for). Repeatable.
    #[arg(long = "cert", value_name = "FILE")]
    pub certs: Vec<PathBuf>,

    #[command(flatten)]
    pub transport: TransportArgs,

    /// The image.
    pub src: String,
}

/// `layercrypt keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key type: rsa (4096), rsa2048, rsa3072, rsa4096, ec (P-256), p256, p384, p521.
    #[arg(long = "type", short = 't', default_value = "ec")]
    pub kind: String,

    /// Write PREFIX.pem (private, mode 0600) and PREFIX.pub.pem (public).
    #[arg(long, short, value_name = "PREFIX")]
    pub out: PathBuf,

    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Checks a recipient spec at parse time, so that a bad one is a usage error (exit 2) with
/// clap's message; the spec stays text until its files are read.
fn recipient_spec(value: &str) -> Result<String, String> {
    value
        .parse::<layercrypt_client::recipients::RecipientSpec>()
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn a_bad_recipient_is_a_usage_error() {
        let e = <Cli as clap::Parser>::try_parse_from([
            "layercrypt",
            "encrypt",
            "-r",
            "pgp:someone",
            "oci:a",
            "oci:b",
        ])
        .expect_err("unknown scheme");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(e.exit_code(), 2);
    }
}
