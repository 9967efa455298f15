//! `layercrypt-broker`: the layercrypt key broker. Logic lives in `layercrypt-keybroker`.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser as _;
use layercrypt_keybroker::server::App;

const DEV_WARNING: &str = "\
*********************************************************************
*  layercrypt-broker --dev: DEVELOPMENT MODE, UNSAFE FOR PRODUCTION *
*  - anyone who can reach POST /dev/token gets any identity          *
*  - keys live in a temporary directory deleted on exit              *
*  - the admin token below is printed in clear                       *
*  Never use --dev with real images or real keys.                    *
*********************************************************************";

#[allow(clippy::print_stdout, clippy::print_stderr)] // a binary's own output
#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::CheckConfig(args) => args.into_config().map(|c| print!("{}", c.redacted())),
        cli::Command::Serve(args) => serve(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("layercrypt-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)] // the --dev banner and token are output
async fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    layercrypt_keybroker::server::harden_process();
    if config.dev {
        eprintln!("{DEV_WARNING}");
    }
    if !config.has_tls() && !config.listen.ip().is_loopback() {
        tracing::warn!("PLAIN HTTP on {} (--insecure-http): tokens and keys cross the network unencrypted unless a TLS proxy is in front", config.listen);
    }
    if !config.dev {
        // --dev replaces the store and the issuer: its own lines below say what it uses.
        tracing::info!("configuration:\n{}", config.redacted());
    }
    let app = App::build(&config).await?;
    let addr = app.local_addr()?;
    if let Some(token) = app.dev_admin_token() {
        println!("dev broker listening on {addr}");
        if let (Some(dir), Some(issuer)) = (app.dev_data_dir(), app.dev_issuer_url()) {
            println!(
                "throw-away store: {} (removed at exit); token issuer: {issuer}",
                dir.display()
            );
        }
        println!("bootstrap admin token: {}", token.expose_secret());
    }
    app.serve().await?;
    Ok(())
}
