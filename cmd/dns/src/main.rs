//! `kubelite-dns`: cluster DNS until SIGINT/SIGTERM.
//! The flags and the run sequence live in `kubelite_dns::cli`, shared with `kubelite dns`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "kubelite-dns", version, about = "Cluster DNS for kubelite")]
struct Cli {
    #[command(flatten)]
    options: kubelite_dns::cli::Options,
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
