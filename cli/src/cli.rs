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

    #[command(subcommand)]
    pub command: Command,
}

/// Exit codes, shown in `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other error
  2  usage error
  3  no key can decrypt a layer (none given fits, or access was refused)
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

    /// Use plain HTTP for registries other than localhost (for test registries only).
    #[arg(long)]
    pub insecure: bool,

    /// Only this platform of a multi-platform image (os/arch[/variant]); default: all.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

/// Keys for decryption.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// A private key, certificate or bundle (PEM, DER, PKCS#12, JWK), or provider:NAME[:PARAM].
    /// Repeatable. Default: ~/.globus/usercert.pem and ~/.globus/userkey.pem if present.
    #[arg(long = "key", short = 'k', value_name = "FILE")]
    pub keys: Vec<String>,

    /// Read passphrases for encrypted keys from this file (first line) instead of prompting.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// `layercrypt encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Who can decrypt: jwe:PUBKEY, x509:CERT (or pkcs7:CERT), provider:NAME[:PARAM]. Repeatable.
    #[arg(
        long = "recipient",
        short = 'r',
        value_name = "SCHEME:VALUE",
        required = true
    )]
    pub recipients: Vec<String>,

    /// Encrypt only this layer (0-based; negative counts from the end). Repeatable; default all.
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

/// `layercrypt decrypt`.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub keys: KeyArgs,

    /// Decrypt only this layer (0-based; negative from the end). Repeatable; default all.
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

/// `layercrypt rewrap`.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    #[command(flatten)]
    pub keys: KeyArgs,

    /// Recipient to add (needs a --key that opens the layers). Repeatable.
    #[arg(long = "add-recipient", short = 'a', value_name = "SCHEME:VALUE")]
    pub add: Vec<String>,

    /// Recipient to remove (JWE keys are matched by thumbprint, certificates by issuer and
    /// serial, providers by name). Repeatable.
    #[arg(long = "remove-recipient", short = 'd', value_name = "SCHEME:VALUE")]
    pub remove: Vec<String>,

    /// Remove every existing recipient; only the added ones remain.
    #[arg(long, requires = "add")]
    pub remove_all: bool,

    /// Only this layer (0-based; negative from the end). Repeatable; default all.
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
