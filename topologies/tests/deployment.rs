//! The docker-compose deployment, checked without a Docker engine: Debian's compose validator
//! (`docker-compose config`, installed by `.ci/setup`) accepts the file, and the file keeps the
//! promises the README makes of it (scalable workers without fixed host ports, a volume and a
//! grace period each, every platform topology, Prometheus finding every replica).

use std::process::Command;

mod common;
use common::repo_file;

/// The lines of service `name` in the compose file (its block, up to the next service).
fn service(compose: &str, name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| *l != header);
    let mut block = String::new();
    if let Some(first) = lines.next() {
        block.push_str(first);
        block.push('\n');
    }
    for line in lines {
        let is_next_service =
            line.starts_with("  ") && !line.starts_with("   ") && line.ends_with(':');
        if is_next_service {
            break;
        }
        block.push_str(line);
        block.push('\n');
    }
    assert!(!block.is_empty(), "no service `{name}`");
    block
}

#[test]
fn the_compose_file_is_valid() {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "--quiet"])
        .current_dir(&root)
        .output()
        .expect("docker-compose is installed (`bash .ci/setup`: Debian's docker-compose)");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let services = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "--services"])
        .current_dir(&root)
        .output()
        .unwrap();
    let services = String::from_utf8_lossy(&services.stdout);
    let mut names: Vec<&str> = services.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "generator",
            "grafana",
            "kafka",
            "prometheus",
            "topics",
            "worker"
        ]
    );
}

#[test]
fn workers_scale_and_keep_their_promises() {
    let compose = repo_file("docker-compose.yml");
    let worker = service(&compose, "worker");
    // Scalable: no host port is fixed (`"8080"`, never `"8080:8080"`), no container name.
    let ports: Vec<&str> = worker
        .lines()
        .skip_while(|l| l.trim() != "ports:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('-'))
        .collect();
    assert_eq!(ports.len(), 2, "{worker}");
    assert!(
        ports.iter().all(|p| !p.contains(':')),
        "fixed host port: {ports:?}"
    );
    assert!(!worker.contains("container_name"), "{worker}");
    assert!(worker.contains("stop_grace_period: 30s"), "{worker}");
    assert!(
        worker.contains("- /var/lib/eddy"),
        "a volume per replica: {worker}"
    );
    assert!(
        worker.contains("EDDY_PROCESSING_GUARANTEE: exactly_once_v2"),
        "{worker}"
    );
    for topology in eddy_topologies::platform::PLATFORM_TOPOLOGIES {
        assert!(
            worker.contains(topology),
            "the worker runs {topology}: {worker}"
        );
    }
    // Prometheus finds every replica by the service's DNS name, on the worker's HTTP port.
    assert!(worker.contains("--http 0.0.0.0:8080"), "{worker}");
    let prometheus = repo_file("deploy/prometheus/prometheus.yml");
    assert!(prometheus.contains("dns_sd_configs"), "{prometheus}");
    assert!(prometheus.contains("names: [worker]"), "{prometheus}");
    assert!(prometheus.contains("port: 8080"), "{prometheus}");
    // Kafka 4 in KRaft mode with a healthcheck the topic job waits for.
    let kafka = service(&compose, "kafka");
    assert!(kafka.contains("image: apache/kafka:4."), "{kafka}");
    assert!(
        kafka.contains("KAFKA_PROCESS_ROLES: broker,controller"),
        "{kafka}"
    );
    assert!(kafka.contains("healthcheck:"), "{kafka}");
    let topics = service(&compose, "topics");
    assert!(topics.contains("condition: service_healthy"), "{topics}");
    assert!(topics.contains("create-topics"), "{topics}");
    // Grafana with the dashboard provisioned.
    let grafana = service(&compose, "grafana");
    assert!(grafana.contains("./deploy/grafana/provisioning:/etc/grafana/provisioning"));
    assert!(grafana.contains("./deploy/grafana/dashboards:/var/lib/grafana/dashboards"));
    // The image the services run is the multi-stage Dockerfile's.
    let dockerfile = repo_file("Dockerfile");
    assert_eq!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM")),
        2
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"eddy\"]"), "{dockerfile}");
}

/// The topic job's command: the platform's topics, created through `eddy create-topics`.
#[test]
fn create_topics_makes_the_platforms_topics() {
    let broker = eddy_testkit::EmbeddedBroker::start().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["create-topics", "--brokers", &broker.bootstrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Twice is fine: the job may run again on every `up`.
    let again = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["create-topics", "--brokers", &broker.bootstrap()])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    for (topic, partitions, _) in eddy_topologies::generator::PLATFORM_TOPICS {
        let configs = broker
            .topic_configs(topic)
            .unwrap_or_else(|| panic!("no {topic}"));
        assert!(configs.contains_key("retention.ms"), "{topic}: {configs:?}");
        assert!(
            broker.log_start_offset(topic, partitions - 1).is_some(),
            "{topic}"
        );
        assert!(
            broker.log_start_offset(topic, *partitions).is_none(),
            "{topic}"
        );
    }
}
