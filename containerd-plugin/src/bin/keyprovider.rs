//! `layercrypt-keyprovider`: the ocicrypt key provider (cmd protocol) for layercrypt groups.
//! See `docs/worker-node.md`. gRPC mode is not implemented (cmd covers CRI-O, podman, skopeo
//! and buildah, which all run the provider as a command).
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Parser;
use layercrypt_containerd::cli::KeyProviderArgs;
use layercrypt_containerd::{error_line, init_logging};
use layercrypt_node::broker::node_group;
use layercrypt_node::config::NodeConfig;
use layercrypt_node::keyprovider::{
    parse_request, serve, BrokerBackend, NoBroker, MAX_REQUEST_LEN,
};
use layercrypt_node::Error;
use tracing::debug;

const PREFIX: &str = "layercrypt-keyprovider";

fn run(args: &KeyProviderArgs) -> Result<(), Error> {
    // The request may carry the user's other private keys: read it into zeroizing memory
    // and never log it.
    let mut body = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST_LEN + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::Io {
            what: "reading the request from stdin",
            source: e,
        })?;
    let request = parse_request(&body)?;
    drop(body);
    debug!(?request, "key-provider request");
    let (node, node_file) = NodeConfig::load_or_default(args.config.as_deref())?;
    let reply = match node_group(&node)? {
        Some(group) => serve(
            &request,
            &node,
            &BrokerBackend {
                group,
                node: &node,
                node_file: node_file.as_deref(),
            },
        )?,
        None => serve(&request, &node, &NoBroker)?,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&reply)
        .and_then(|_| out.flush())
        .map_err(|e| Error::Io {
            what: "writing the reply to stdout",
            source: e,
        })
}

fn main() -> ExitCode {
    let args = KeyProviderArgs::parse();
    init_logging();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error_line(PREFIX, &e.to_string());
            ExitCode::FAILURE
        }
    }
}
