//! kubelite-apiserver: parse flags, init tracing, run the API server until Ctrl-C or SIGTERM.

use clap::Parser;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kubelite-apiserver",
    version,
    about = "The kubelite Kubernetes API server"
)]
struct Cli {
    #[command(flatten)]
    options: kubelite_apiserver::options::Options,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    kubelite_apiserver::run(
        cli.options.into_config(),
        kubelite_apiserver::shutdown_signal(),
    )
    .await?;
    Ok(())
}
