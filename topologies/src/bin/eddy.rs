//! The `eddy` command line: list and describe the topologies Eddy ships.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "eddy",
    version,
    about = "Eddy: exactly-once stream processing in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the topologies this binary can run.
    List,
    /// Prints a topology's sub-topologies, sources, processors, stores and sinks.
    Describe {
        /// The topology's name (see `eddy list`).
        name: String,
        /// Prints a Mermaid flowchart instead of text.
        #[arg(long)]
        mermaid: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::List => {
            for t in eddy_topologies::registry() {
                println!("{:<24} {}", t.name, t.summary);
            }
        }
        Command::Describe { name, mermaid } => {
            let Some(entry) = eddy_topologies::find(&name) else {
                let known: Vec<&str> = eddy_topologies::registry().iter().map(|t| t.name).collect();
                bail!("no topology named `{name}`; known: {}", known.join(", "));
            };
            let topology = (entry.build)().with_context(|| format!("building `{name}`"))?;
            if mermaid {
                print!("{}", topology.describe_mermaid());
            } else {
                print!("{}", topology.describe());
            }
        }
    }
    Ok(())
}
