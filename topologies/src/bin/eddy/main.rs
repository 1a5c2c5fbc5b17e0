//! The `eddy` command line: list and describe the topologies Eddy ships, run them (on the
//! embedded broker or Kafka) with SQL over their state, and query that state.

mod progress;
mod query;

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use eddy_engine::{StreamsConfig, StreamsState};
use eddy_topologies::generator::{Generator, GeneratorConfig};
use eddy_topologies::platform;

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
    /// The platform demo: starts the embedded broker, creates the platform's topics, feeds them
    /// with the generator and runs all seven topologies, printing progress until Ctrl-C.
    Demo {
        /// Generated records per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Stop after this many seconds (runs until Ctrl-C when absent).
        #[arg(long)]
        seconds: Option<u64>,
        /// `processing.guarantee`.
        #[arg(long, default_value = "exactly_once_v2")]
        guarantee: String,
        /// Where the SQL endpoint (`POST /query`) listens; port 0 picks a free one. Without
        /// it, 127.0.0.1:8080 (where `eddy query` looks), or a free port when that is taken.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        #[command(flatten)]
        pg: PgArgs,
        /// Prints progress as lines (for logs and CI) instead of a table refreshed in place.
        #[arg(long)]
        plain: bool,
    },
    /// Runs topologies against Kafka (the embedded broker when no brokers are given).
    Run {
        /// Topology names (see `eddy list`).
        #[arg(required = true)]
        topologies: Vec<String>,
        /// `bootstrap.servers`; without it an embedded broker starts in this process.
        #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
        brokers: Option<String>,
        /// A properties file of streams settings (`processing.guarantee=...`, ...).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Stop after this many seconds (runs until Ctrl-C when absent).
        #[arg(long)]
        seconds: Option<u64>,
        /// Where the SQL endpoint (`POST /query`) listens; port 0 picks a free one. Without
        /// it, 127.0.0.1:8080 (where `eddy query` looks), or a free port when that is taken.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        #[command(flatten)]
        pg: PgArgs,
        /// Prints progress as lines (for logs and CI) instead of a table refreshed in place.
        #[arg(long)]
        plain: bool,
    },
    /// Runs a SQL query on a running `eddy demo` or `eddy run` and prints the rows.
    Query {
        /// The query, e.g. "SELECT * FROM \"quiz-stats\" LIMIT 5".
        sql: String,
        /// The HTTP endpoint (printed at start; `eddy demo` and `eddy run` listen on this one
        /// unless told otherwise or it was taken).
        #[arg(long, env = "EDDY_QUERY_URL", default_value = DEFAULT_QUERY_URL)]
        url: String,
        /// `table` or `json`.
        #[arg(long, default_value = "table")]
        format: String,
        /// The endpoint's bearer token, if it has one.
        #[arg(long, env = "EDDY_HTTP_TOKEN")]
        token: Option<String>,
    },
    /// Creates the platform's topics (inputs and outputs) on Kafka, if missing: the
    /// deployment's topic job.
    CreateTopics {
        /// `bootstrap.servers`.
        #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
        brokers: String,
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
        /// Produce to these brokers instead of writing JSON lines.
        #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
        brokers: Option<String>,
    },
}

/// The Postgres wire endpoint's settings.
#[derive(clap::Args, Clone)]
struct PgArgs {
    /// Where the Postgres endpoint (psql, drivers) listens; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pg: std::net::SocketAddr,
    /// A password every Postgres client must give (cleartext: keep it on loopback or behind TLS).
    #[arg(long, env = "EDDY_PG_PASSWORD")]
    pg_password: Option<String>,
    /// A bearer token every HTTP request must carry (`Authorization: Bearer …`); give every
    /// instance of an application the same one.
    #[arg(long, env = "EDDY_HTTP_TOKEN")]
    http_token: Option<String>,
}

/// How often the embedded broker compacts changelogs (Kafka's log cleaner runs in the
/// background too).
const LOG_CLEANER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn".into()),
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
            let config = eddy_broker::BrokerConfig {
                listen: std::net::SocketAddr::new(host, port),
                default_partitions,
                data_dir,
                compaction_interval: Some(LOG_CLEANER_INTERVAL),
                ..Default::default()
            };
            let broker =
                eddy_broker::EmbeddedBroker::start_with(config).context("starting the broker")?;
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
        Command::Demo {
            rate,
            seconds,
            guarantee,
            http,
            pg,
            plain,
        } => demo(rate, seconds, &guarantee, http, &pg, plain)?,
        Command::Run {
            topologies,
            brokers,
            config,
            seconds,
            http,
            pg,
            plain,
        } => run(&topologies, brokers, config, seconds, http, &pg, plain)?,
        Command::Query {
            sql,
            url,
            format,
            token,
        } => query::run(&url, &sql, &format, token.as_deref())?,
        Command::CreateTopics { brokers } => {
            platform::create_platform_topics(&brokers)
                .with_context(|| format!("creating the platform's topics on {brokers}"))?;
            println!("the platform's topics exist on {brokers}");
        }
        Command::Generate {
            count,
            seed,
            rate,
            late_share,
            bad_share,
            output,
            brokers,
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
            if let Some(brokers) = brokers {
                let stop = platform::stop_on_signal();
                let sent = platform::feed(&brokers, config, rate, &stop)?;
                eprintln!("sent {sent} records to {brokers}");
                return Ok(());
            }
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

/// Where the applications' state lives in a demo or an ad-hoc run.
fn temp_state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("eddy-{}", std::process::id()))
}

/// Ticks every 2 s until `stop`, `seconds` pass, or an application stops on its own.
fn wait_until(
    stop: &std::sync::atomic::AtomicBool,
    seconds: Option<u64>,
    apps: &[(String, eddy_engine::KafkaStreams)],
    mut tick: impl FnMut(),
) {
    let started = std::time::Instant::now();
    let stopped_on_its_own = || {
        apps.iter().any(|(_, app)| {
            matches!(
                app.state(),
                StreamsState::PendingError | StreamsState::Error | StreamsState::NotRunning
            )
        })
    };
    while !stop.load(std::sync::atomic::Ordering::SeqCst)
        && seconds.is_none_or(|s| started.elapsed().as_secs() < s)
        && !stopped_on_its_own()
    {
        std::thread::sleep(std::time::Duration::from_secs(2));
        tick();
    }
}

/// Closes every application; an error if one of them stopped on its own (so that `eddy`
/// exits non-zero with it), after closing the rest.
fn close_all(apps: Vec<(String, eddy_engine::KafkaStreams)>) -> Result<()> {
    let mut failures = Vec::new();
    for (name, app) in apps {
        let failure = app.failure();
        let closed = app.close();
        match (failure, closed) {
            (Some(failure), _) => failures.push(format!("{name} stopped: {failure}")),
            (None, Err(e)) => failures.push(format!("stopping {name}: {e}")),
            (None, Ok(())) => {}
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(anyhow::anyhow!(failures.join("; "))),
    }
}

/// Where `eddy demo` and `eddy run` serve SQL over HTTP unless told otherwise, and where
/// `eddy query` asks.
macro_rules! default_http {
    () => {
        "127.0.0.1:8080"
    };
}
const DEFAULT_HTTP: &str = default_http!();
const DEFAULT_QUERY_URL: &str = concat!("http://", default_http!());

/// The SQL endpoints of a run: HTTP and Postgres, stopped when dropped.
struct SqlEndpoints {
    _http: eddy_engine::QueryServer,
    _pg: eddy_engine::PgServer,
    /// How to reach them, for the top of the progress table.
    header: Vec<String>,
}

/// Serves SQL over every running application's stores and says how to reach it.
fn serve_sql(
    apps: &[(String, eddy_engine::KafkaStreams)],
    listen: Option<std::net::SocketAddr>,
    pg: &PgArgs,
) -> Result<SqlEndpoints> {
    let queries = eddy_engine::StateQueries::merged(apps.iter().map(|(_, a)| a.queries()))?
        .with_token(pg.http_token.clone())
        .context("--http-token")?;
    let server = match listen {
        Some(listen) => queries.serve_http(listen),
        // The default port, unless another process (another demo) has it.
        None => queries.serve_http(DEFAULT_HTTP.parse()?).or_else(|taken| {
            eprintln!("{taken}; the SQL endpoint listens on a free port instead");
            queries.serve_http(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        }),
    }
    .context("starting the SQL endpoint")?;
    let tables: Vec<String> = queries.stores().into_iter().map(|s| s.name).collect();
    let example = tables.first().map_or("<store>", String::as_str);
    println!(
        "SQL over state: curl -s http://{}/query -d '{{\"sql\": \"SELECT * FROM \\\"{example}\\\" LIMIT 5\"}}'",
        server.local_addr(),
    );
    println!(
        "  or: eddy query --url http://{} 'SELECT * FROM \"{example}\" LIMIT 5'",
        server.local_addr()
    );
    let pg_server = queries
        .serve_pg(pg.pg, pg.pg_password.clone())
        .context("starting the Postgres endpoint")?;
    println!("  or: psql postgres://eddy@{}/eddy", pg_server.local_addr());
    println!("  tables: {}", tables.join(", "));
    let header = vec![
        format!("console: http://{}/", server.local_addr()),
        format!(
            "psql:    psql postgres://eddy@{}/eddy",
            pg_server.local_addr()
        ),
        format!("metrics: http://{}/metrics", server.local_addr()),
    ];
    for line in &header {
        println!("{line}");
    }
    Ok(SqlEndpoints {
        _http: server,
        _pg: pg_server,
        header,
    })
}

fn demo(
    rate: f64,
    seconds: Option<u64>,
    guarantee: &str,
    http: Option<std::net::SocketAddr>,
    pg: &PgArgs,
    plain: bool,
) -> Result<()> {
    let broker = eddy_broker::EmbeddedBroker::start_with(eddy_broker::BrokerConfig {
        default_partitions: 3,
        compaction_interval: Some(LOG_CLEANER_INTERVAL),
        ..Default::default()
    })?;
    let bootstrap = broker.bootstrap();
    println!("embedded Kafka-protocol broker at {bootstrap} (try: kcat -b {bootstrap} -L)");
    platform::create_platform_topics(&bootstrap)?;
    let mut streams = StreamsConfig::new("eddy-demo");
    streams.set("processing.guarantee", guarantee)?;
    // The demo shows every figure the dashboard has, store operations included.
    streams.set("metrics.recording.level", "debug")?;
    streams.state_dir = temp_state_dir();
    let mut apps = Vec::new();
    for name in platform::PLATFORM_TOPOLOGIES {
        apps.push((
            name.to_string(),
            platform::start_topology(name, &bootstrap, streams.clone())?,
        ));
    }
    let sql = serve_sql(&apps, http, pg)?;
    println!("running {} topologies; Ctrl-C stops", apps.len());
    let stop = platform::stop_on_signal();
    let fed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let feeder = {
        let (stop, fed, bootstrap) = (
            std::sync::Arc::clone(&stop),
            std::sync::Arc::clone(&fed),
            bootstrap.clone(),
        );
        std::thread::spawn(move || {
            // One generated batch after another, each with its own seed, at the demo rate.
            for seed in 1.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let config = GeneratorConfig {
                    seed,
                    count: (rate * 10.0).max(1.0) as usize,
                    ..Default::default()
                };
                match platform::feed(&bootstrap, config, Some(rate), &stop) {
                    Ok(n) => {
                        fed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("generator stopped: {e}");
                        break;
                    }
                }
            }
        })
    };
    let mut view = progress::ProgressView::new(plain, sql.header.clone());
    wait_until(&stop, seconds, &apps, || {
        view.show(&apps, fed.load(std::sync::atomic::Ordering::Relaxed))
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = feeder.join();
    view.show(&apps, fed.load(std::sync::atomic::Ordering::Relaxed));
    drop(sql);
    let closed = close_all(apps);
    let _ = std::fs::remove_dir_all(temp_state_dir());
    closed
}

fn run(
    names: &[String],
    brokers: Option<String>,
    config: Option<std::path::PathBuf>,
    seconds: Option<u64>,
    http: Option<std::net::SocketAddr>,
    pg: &PgArgs,
    plain: bool,
) -> Result<()> {
    let mut streams = StreamsConfig::new("eddy");
    if let Some(path) = &config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        streams.apply_properties(&text)?;
    }
    streams.apply_env()?;
    // The other workers reach this one's partitions at `application.server`: the HTTP endpoint
    // listens on its port (on every interface, as its host is another machine's view of this
    // one) unless --http names a port.
    let http = match (&streams.application_server, http) {
        (Some(server), http) if http.is_none_or(|h| h.port() == 0) => {
            let port = server.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
            Some(std::net::SocketAddr::new(
                [0, 0, 0, 0].into(),
                port.unwrap_or(0),
            ))
        }
        (_, http) => http,
    };
    let embedded;
    let bootstrap = match brokers {
        Some(b) => b,
        None => {
            embedded = eddy_broker::EmbeddedBroker::start_with(eddy_broker::BrokerConfig {
                default_partitions: 3,
                compaction_interval: Some(LOG_CLEANER_INTERVAL),
                ..Default::default()
            })?;
            let b = embedded.bootstrap();
            println!("no --brokers: embedded Kafka-protocol broker at {b}");
            platform::create_platform_topics(&b)?;
            b
        }
    };
    let mut apps = Vec::new();
    for name in names {
        apps.push((
            name.clone(),
            platform::start_topology(name, &bootstrap, streams.clone())?,
        ));
    }
    let sql = serve_sql(&apps, http, pg)?;
    let stop = platform::stop_on_signal();
    let mut view = progress::ProgressView::new(plain, sql.header.clone());
    wait_until(&stop, seconds, &apps, || view.show(&apps, 0));
    drop(sql);
    close_all(apps)
}
