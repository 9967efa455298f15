//! `layercrypt-decoder`: the containerd stream processor. See `docs/worker-node.md`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use layercrypt_containerd::cli::DecoderArgs;
use layercrypt_containerd::{error_line, init_logging};
use layercrypt_node::broker::node_group;
use layercrypt_node::config::NodeConfig;
use layercrypt_node::decode::{decode_layer, DecodeRequest, ENV_MEDIATYPE};
use layercrypt_node::keydir::{add_payload_keys, load_key_dir, KeyDirReport};
use layercrypt_node::payload::{self, Payload};
use layercrypt_node::pipes::grow_pipe;
use layercrypt_ocicrypt::keywrap::keyprovider::load_config_from_env;
use layercrypt_ocicrypt::layer::Wrappers;
use layercrypt_ocicrypt::DecryptConfig;
use tracing::debug;

const PREFIX: &str = "layercrypt-decoder";

fn run(payload: &Payload, args: &DecoderArgs) -> Result<u64, layercrypt_node::Error> {
    let (node, node_file) = NodeConfig::load_or_default(args.config.as_deref())?;
    debug!(file = ?node_file, config = %node.summary(), "node config");
    let mut keys = DecryptConfig::default();
    let mut key_dir = KeyDirReport::default();
    for dir in &args.decryption_keys_path {
        key_dir = load_key_dir(dir, &mut keys);
        debug!(dir = %dir.display(), usable = key_dir.usable_files, "key directory read");
    }
    let from_payload = add_payload_keys(&payload.keys, &mut keys);
    debug!(from_payload, "keys from the payload");
    // Key providers as ctd-decoder has them (containerd config `env`), then our group
    // wrapper: it talks only to the brokers of the node config, with the node's credential.
    // It replaces a `layercrypt` entry of OCICRYPT_KEYPROVIDER_CONFIG (same annotation).
    let mut wrappers = Wrappers::new().with_providers(load_config_from_env()?);
    let group = node_group(&node)?;
    let status = group.as_ref().map(|g| g.status.clone());
    if let Some(g) = group {
        wrappers.push(Box::new(g.wrapper));
    }
    let media_type = std::env::var(ENV_MEDIATYPE)
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| payload.descriptor.media_type.clone());
    debug!(%media_type, digest = %payload.descriptor.digest, "decoding layer");
    let req = DecodeRequest {
        media_type: &media_type,
        descriptor: &payload.descriptor,
        wrappers: &wrappers,
        keys: &keys,
        key_dir: &key_dir,
        node: &node,
        node_file: node_file.as_deref(),
        group: status.as_ref(),
    };
    // One decoder chunk per wake-up on both pipes (layercrypt_node::pipes).
    grow_pipe("stdin", std::io::stdin());
    grow_pipe("stdout", std::io::stdout());
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let n = decode_layer(&req, &mut stdin, &mut stdout)?;
    stdout.flush().map_err(|e| layercrypt_node::Error::Io {
        what: "flushing stdout",
        source: e,
    })?;
    Ok(n)
}

/// containerd 1.6 can finish the unpack (and check the diffID) before it has recorded our
/// exit status, and then reports `wrong diff id` instead of our line (observed for a layer
/// that failed before any output: a group refusal). A short-lived `sleep` that inherits
/// only our stdout keeps the pipe open a little after we exit: containerd's `Wait` (which
/// waits for our stderr, not stdout) records the failure first, and the unpack then sees it.
/// Best effort: without `sleep` nothing changes but the race.
fn hold_stdout_after_exit() {
    let _ = std::process::Command::new("sleep")
        .arg("0.3")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

fn main() -> ExitCode {
    // fd 3 first, before anything could open a file and take that number.
    let payload = payload::read_from_fd3();
    let args = DecoderArgs::parse();
    init_logging();
    let (digest, result) = match payload {
        Ok(p) => (p.descriptor.digest.clone(), run(&p, &args)),
        Err(e) => ("<unknown digest>".to_owned(), Err(e)),
    };
    match result {
        Ok(n) => {
            debug!(bytes = n, "layer decrypted");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // stderr is complete and flushed before stdout closes (at exit): containerd reads
            // it only after the unpack, and kills us once it is done with stdout.
            error_line(PREFIX, &format!("layer {digest}: {e}"));
            hold_stdout_after_exit();
            ExitCode::FAILURE
        }
    }
}
