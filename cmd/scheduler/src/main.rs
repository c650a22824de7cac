//! `kubelite-scheduler`: the scheduler binary: flags → config → /healthz + /metrics → scheduling until SIGINT/SIGTERM.
//! The flags and the run sequence live in `kubelite_scheduler::cli`, shared with `kubelite scheduler`.

use clap::Parser;

// The allocator the API server ships with: a scheduler decodes and drops many small strings.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "kubelite-scheduler", version, about = "The kubelite scheduler")]
struct Cli {
    #[command(flatten)]
    options: kubelite_scheduler::cli::Options,
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
