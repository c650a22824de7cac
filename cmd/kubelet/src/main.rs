//! `kubelite-kubelet`: the node agent binary, until SIGINT/SIGTERM (pods keep running and are adopted on restart).
//! The flags and the run sequence live in `kubelite_kubelet::cli`, shared with `kubelite kubelet`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kubelite-kubelet",
    version,
    about = "kubelite node agent (Docker runtime)"
)]
struct Cli {
    #[command(flatten)]
    options: kubelite_kubelet::cli::Options,
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
