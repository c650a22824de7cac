//! `kubelite-proxy`: the service proxy (or `--cleanup`) until SIGINT/SIGTERM.
//! The flags and the run sequence live in `kubelite_proxy::cli`, shared with `kubelite proxy`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kubelite-proxy",
    version,
    about = "The kubelite service proxy (kube-proxy iptables mode)"
)]
struct Cli {
    #[command(flatten)]
    options: kubelite_proxy::cli::Options,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    kubelite_component_base::init_logging("info");
    cli.options
        .run(kubelite_component_base::shutdown_signal())
        .await?;
    Ok(())
}
