//! `oqs-fault-account --store DIR SITE/TERMINAL=SPOOL_DIR …`: one JSON line per terminal, the
//! accounting of `oqs_faults::account` (tests/faults/run judges it).

use anyhow::{bail, Context};
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Accounts for every report each agent made against a stopped collector's store")]
struct Args {
    /// The collector's data directory (the collector stopped).
    #[arg(long)]
    store: PathBuf,
    /// SITE/TERMINAL=SPOOL_DIR, one per agent.
    agents: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = oqs_collector::store::Store::open(&args.store)
        .with_context(|| format!("opening the store in {}", args.store.display()))?;
    for spec in &args.agents {
        let Some((id, spool)) = spec.split_once('=') else {
            bail!("{spec:?}: expected SITE/TERMINAL=SPOOL_DIR");
        };
        let Some((site, terminal)) = id.split_once('/') else {
            bail!("{id:?}: expected SITE/TERMINAL");
        };
        let agent = oqs_faults::read_spool(std::path::Path::new(spool))?;
        let stored = oqs_faults::read_store(&store, site, terminal)?;
        let a = oqs_faults::account(site, terminal, &agent, &stored);
        println!("{}", serde_json::to_string(&a)?);
    }
    Ok(())
}
