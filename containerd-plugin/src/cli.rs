//! Command lines of both binaries.

use std::path::PathBuf;

use clap::Parser;

/// containerd stream processor: decrypts one ocicrypt-encrypted layer from stdin to stdout.
///
/// Configure it in containerd under the processor IDs io.containerd.ocicrypt.decoder.v1.tar
/// and io.containerd.ocicrypt.decoder.v1.tar.gzip (only those get the payload on fd 3);
/// containerd passes the layer's media type in STREAM_PROCESSOR_MEDIATYPE. Logs: set
/// LAYERCRYPT_LOG=debug (stderr only).
#[derive(Debug, Parser)]
#[command(name = "layercrypt-decoder", version)]
pub struct DecoderArgs {
    /// Directory of private keys (JWE keys, X.509 certificate + key pairs, PKCS#12, JWK), read
    /// recursively; unusable files are skipped. Same flag as imgcrypt's ctd-decoder.
    #[arg(long = "decryption-keys-path", value_name = "DIR")]
    pub decryption_keys_path: Vec<PathBuf>,

    /// Node configuration (trusted brokers, credential). Default: /etc/layercrypt/node.toml
    /// if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// ocicrypt key provider (cmd protocol) for layercrypt groups: reads one JSON request on
/// stdin, writes the reply on stdout.
///
/// Register it in the file named by OCICRYPT_KEYPROVIDER_CONFIG as
/// {"key-providers":{"layercrypt":{"cmd":{"path":"/usr/local/bin/layercrypt-keyprovider"}}}}.
#[derive(Debug, Parser)]
#[command(name = "layercrypt-keyprovider", version)]
pub struct KeyProviderArgs {
    /// Node configuration (trusted brokers, credential). Default: /etc/layercrypt/node.toml
    /// if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
