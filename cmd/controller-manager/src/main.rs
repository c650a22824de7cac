//! `kubelite-controller-manager`: runs the built-in controllers (optionally under leader election) until SIGINT/SIGTERM.
//! The flags and the run sequence live in `kubelite_controllers::cli`, shared with `kubelite controller-manager`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kubelite-controller-manager",
    version,
    about = "The kubelite controller-manager"
)]
struct Cli {
    #[command(flatten)]
    options: kubelite_controllers::cli::Options,
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
