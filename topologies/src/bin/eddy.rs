//! The `eddy` command line: list and describe the topologies Eddy ships.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use eddy_topologies::generator::{Generator, GeneratorConfig};

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
    /// Runs the embedded Kafka-protocol broker as a process (for kcat, tests and demos).
    Broker {
        /// Port to listen on (0: a free one, printed at start).
        #[arg(long, default_value_t = 9092)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Partitions of auto-created topics.
        #[arg(long, default_value_t = 1)]
        default_partitions: i32,
        /// Keep data, offsets and producer ids here across restarts (in memory when absent).
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Writes a seeded mix of the platform's events as JSON lines.
    Generate {
        /// Records to write.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Random seed: the same seed gives the same records.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Records per second (unpaced when absent).
        #[arg(long)]
        rate: Option<f64>,
        /// Share of late / out-of-order events.
        #[arg(long, default_value_t = 0.05)]
        late_share: f64,
        /// Share of bad records (malformed JSON, missing ids, unknown types).
        #[arg(long, default_value_t = 0.01)]
        bad_share: f64,
        /// File to write (stdout when absent).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Broker {
            port,
            host,
            default_partitions,
            data_dir,
        } => {
            let config = eddy_testkit::BrokerConfig {
                listen: std::net::SocketAddr::new(host, port),
                default_partitions,
                data_dir,
                ..Default::default()
            };
            let broker =
                eddy_testkit::EmbeddedBroker::start_with(config).context("starting the broker")?;
            println!("eddy broker listening on {}", broker.bootstrap());
            std::io::stdout().flush()?;
            // Runs until killed; with --data-dir every acknowledged change is already journaled.
            loop {
                std::thread::park();
            }
        }
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
        Command::Generate {
            count,
            seed,
            rate,
            late_share,
            bad_share,
            output,
        } => {
            for (name, value) in [("--late-share", late_share), ("--bad-share", bad_share)] {
                if !(0.0..=1.0).contains(&value) {
                    bail!("{name} must be between 0 and 1, got {value}");
                }
            }
            if rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
                bail!("--rate must be a positive number of records per second");
            }
            let config = GeneratorConfig {
                seed,
                count,
                late_share,
                bad_share,
                ..Default::default()
            };
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let started = std::time::Instant::now();
            for (i, record) in Generator::new(config).enumerate() {
                if let Some(rate) = rate {
                    let due = std::time::Duration::from_secs_f64(i as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        out.flush()?;
                        std::thread::sleep(wait);
                    }
                }
                writeln!(out, "{}", record.to_json_line())?;
            }
            out.flush()?;
        }
    }
    Ok(())
}
