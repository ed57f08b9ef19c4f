//! `weir serve` settings: a TOML file, overridden by environment variables, overridden by
//! flags (clap reads both; the file fills in what neither gave).

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use weir_broker::{apply_default, parse_durability, BrokerConfig};
use weir_server::ServerConfig;

/// Settings of `weir serve`. Every field may also be set in the TOML file given with
/// --config, under the flag's name (`data-dir = "/var/lib/weir"`; weir.toml at the repository
/// root lists them all). The underscore spelling of earlier versions (`data_dir`) is still read.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeSettings {
    /// Directory holding all topics [default: ./data]
    #[arg(long, env = "WEIR_DATA_DIR")]
    #[serde(alias = "data_dir")]
    pub data_dir: Option<PathBuf>,
    /// Kafka protocol listener, HOST:PORT or :PORT (host 127.0.0.1) [default: 127.0.0.1:9092]; port 0 picks a free port
    #[arg(long, env = "WEIR_KAFKA_LISTEN", value_parser = parse_listen)]
    #[serde(default, deserialize_with = "listen_in_file")]
    #[serde(alias = "kafka_listen")]
    pub kafka_listen: Option<SocketAddr>,
    /// HTTP/JSON API, /metrics and health endpoints, HOST:PORT or :PORT [default: 127.0.0.1:9644]
    #[arg(long, env = "WEIR_HTTP_LISTEN", value_parser = parse_listen)]
    #[serde(default, deserialize_with = "listen_in_file")]
    #[serde(alias = "http_listen")]
    pub http_listen: Option<SocketAddr>,
    /// HTTP: largest request body [default: 8388608]
    #[arg(long, env = "WEIR_HTTP_BODY_MAX_BYTES")]
    #[serde(alias = "http_body_max_bytes")]
    pub http_body_max_bytes: Option<usize>,
    /// HTTP: request headers must arrive within this [default: 10000]
    #[arg(long, env = "WEIR_HTTP_HEADER_TIMEOUT_MS")]
    #[serde(alias = "http_header_timeout_ms")]
    pub http_header_timeout_ms: Option<u64>,
    /// HTTP: a Server-Sent Events subscriber this far behind for this long is dropped [default: 10000]
    #[arg(long, env = "WEIR_SSE_STALL_TIMEOUT_MS")]
    #[serde(alias = "sse_stall_timeout_ms")]
    pub sse_stall_timeout_ms: Option<u64>,
    /// Host name clients are told to connect to [default: the listen address]
    #[arg(long, env = "WEIR_ADVERTISED_HOST")]
    #[serde(alias = "advertised_host")]
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to [default: the bound port]
    #[arg(long, env = "WEIR_ADVERTISED_PORT")]
    #[serde(alias = "advertised_port")]
    pub advertised_port: Option<u16>,
    /// Partitions of auto-created topics [default: 1]
    #[arg(long, env = "WEIR_DEFAULT_PARTITIONS")]
    #[serde(alias = "default_partitions")]
    pub default_partitions: Option<i32>,
    /// Create a missing topic on first produce (Kafka's auto.create.topics.enable): Kafka
    /// clients, `weir produce` and HTTP POST alike [default: true]
    #[arg(long, env = "WEIR_AUTO_CREATE_TOPICS")]
    #[serde(alias = "auto_create_topics")]
    pub auto_create_topics: Option<bool>,
    /// When to fdatasync: always (acks=all waits for it), never, or interval:<ms> [default: interval:1000]
    #[arg(long, env = "WEIR_FSYNC")]
    pub fsync: Option<String>,
    /// Default retention.ms of topics; -1 keeps forever [default: 604800000]
    #[arg(long, env = "WEIR_RETENTION_MS")]
    #[serde(alias = "retention_ms")]
    pub retention_ms: Option<i64>,
    /// Default retention.bytes per partition; -1 is unlimited [default: -1]
    #[arg(long, env = "WEIR_RETENTION_BYTES")]
    #[serde(alias = "retention_bytes")]
    pub retention_bytes: Option<i64>,
    /// Default segment.bytes [default: 1073741824]
    #[arg(long, env = "WEIR_SEGMENT_BYTES")]
    #[serde(alias = "segment_bytes")]
    pub segment_bytes: Option<u64>,
    /// Largest request frame [default: 104857600]
    #[arg(long, env = "WEIR_MAX_FRAME_BYTES")]
    #[serde(alias = "max_frame_bytes")]
    pub max_frame_bytes: Option<usize>,
    /// Request bytes in flight across all connections [default: 536870912]
    #[arg(long, env = "WEIR_MAX_INFLIGHT_BYTES")]
    #[serde(alias = "max_inflight_bytes")]
    pub max_inflight_bytes: Option<usize>,
    /// Open connections at most [default: 10000]
    #[arg(long, env = "WEIR_MAX_CONNECTIONS")]
    #[serde(alias = "max_connections")]
    pub max_connections: Option<usize>,
    /// Close connections idle this long [default: 600000]
    #[arg(long, env = "WEIR_IDLE_TIMEOUT_MS")]
    #[serde(alias = "idle_timeout_ms")]
    pub idle_timeout_ms: Option<u64>,
    /// A started request must fully arrive within this [default: 30000]
    #[arg(long, env = "WEIR_REQUEST_TIMEOUT_MS")]
    #[serde(alias = "request_timeout_ms")]
    pub request_timeout_ms: Option<u64>,
    /// How often retention and compaction run [default: 60000]
    #[arg(long, env = "WEIR_MAINTENANCE_INTERVAL_MS")]
    #[serde(alias = "maintenance_interval_ms")]
    pub maintenance_interval_ms: Option<u64>,
    /// Segment files kept open at most; the least recently used are closed and reopened on
    /// demand [default: half the open file limit]
    #[arg(long, env = "WEIR_OPEN_FILES_MAX")]
    #[serde(alias = "open_files_max")]
    pub open_files_max: Option<usize>,
    /// A new consumer group waits this long for more members before its first assignment [default: 3000]
    #[arg(long, env = "WEIR_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    #[serde(alias = "group_initial_rebalance_delay_ms")]
    pub group_initial_rebalance_delay_ms: Option<i64>,
    /// KIP-848 groups: members without a heartbeat for this long are removed [default: 45000]
    #[arg(long, env = "WEIR_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    #[serde(alias = "group_consumer_session_timeout_ms")]
    pub group_consumer_session_timeout_ms: Option<i32>,
    /// KIP-848 groups: the heartbeat interval members are told to use [default: 5000]
    #[arg(long, env = "WEIR_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    #[serde(alias = "group_consumer_heartbeat_interval_ms")]
    pub group_consumer_heartbeat_interval_ms: Option<i32>,
}

/// A listen address: `HOST:PORT`, or `:PORT` for 127.0.0.1 (`:0` picks a free port). A host
/// name is resolved (`localhost:9092`); the first address wins.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let with_host = match text.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => text.to_owned(),
    };
    if let Ok(a) = with_host.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || format!("{text:?} is not a listen address: use HOST:PORT or :PORT (e.g. 127.0.0.1:9092, :0)");
    match with_host.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            std::net::ToSocketAddrs::to_socket_addrs(&with_host).ok().and_then(|mut a| a.next()).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// `kafka-listen` and `http-listen` in the config file, in the flags' syntax.
fn listen_in_file<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    parse_listen(&text).map(Some).map_err(serde::de::Error::custom)
}

macro_rules! take_missing {
    ($dst:ident, $src:ident, $($f:ident),*) => { $( if $dst.$f.is_none() { $dst.$f = $src.$f.clone(); } )* };
}

impl ServeSettings {
    /// Fills fields not given by flags or environment from the TOML file.
    pub fn with_file(mut self, path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(path) = path else { return Ok(self) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        let file: ServeSettings =
            toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
        take_missing!(
            self,
            file,
            data_dir,
            kafka_listen,
            http_listen,
            http_body_max_bytes,
            http_header_timeout_ms,
            sse_stall_timeout_ms,
            advertised_host,
            advertised_port,
            default_partitions,
            auto_create_topics,
            fsync,
            retention_ms,
            retention_bytes,
            segment_bytes,
            max_frame_bytes,
            max_inflight_bytes,
            max_connections,
            idle_timeout_ms,
            request_timeout_ms,
            maintenance_interval_ms,
            open_files_max,
            group_initial_rebalance_delay_ms,
            group_consumer_session_timeout_ms,
            group_consumer_heartbeat_interval_ms
        );
        Ok(self)
    }

    pub fn broker_config(&self) -> anyhow::Result<BrokerConfig> {
        let mut c = BrokerConfig::default();
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(p) = self.default_partitions {
            if !(1..=10_000).contains(&p) {
                bail!("default-partitions must be between 1 and 10000, got {p}");
            }
            c.default_partitions = p;
        }
        if let Some(a) = self.auto_create_topics {
            c.auto_create_topics = a;
        }
        let fsync = self.fsync.as_deref().unwrap_or("interval:1000");
        c.log.durability = parse_durability(fsync)
            .with_context(|| format!("fsync must be always, never or interval:<ms>, got {fsync:?}"))?;
        // The storage defaults are topic configs of the broker: validated by the same
        // function as CreateTopics and AlterConfigs, so a value is refused the same way.
        let defaults = [
            ("retention.ms", self.retention_ms.map(|v| v.to_string())),
            ("retention.bytes", self.retention_bytes.map(|v| v.to_string())),
            ("segment.bytes", self.segment_bytes.map(|v| v.to_string())),
        ];
        for (key, value) in defaults {
            if let Some(value) = value {
                c.log = apply_default(&c.log, key, &value).with_context(|| format!("--{}", key.replace('.', "-")))?;
            }
        }
        if let Some(ms) = self.maintenance_interval_ms {
            c.maintenance_interval_ms = ms;
        }
        if let Some(ms) = self.group_initial_rebalance_delay_ms {
            c.group.initial_rebalance_delay_ms = ms.max(0);
        }
        if let Some(ms) = self.group_consumer_session_timeout_ms {
            c.group.consumer_session_timeout_ms = ms.max(1000);
        }
        if let Some(ms) = self.group_consumer_heartbeat_interval_ms {
            c.group.consumer_heartbeat_interval_ms = ms.max(100);
        }
        c.log.validate().context("invalid storage settings")?;
        Ok(c)
    }

    pub fn http_config(&self) -> weir_http::HttpConfig {
        let mut c = weir_http::HttpConfig::default();
        if let Some(l) = self.http_listen {
            c.listen = l;
        }
        if let Some(v) = self.http_body_max_bytes {
            c.body_bytes_max = v;
        }
        if let Some(v) = self.http_header_timeout_ms {
            c.header_read_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.sse_stall_timeout_ms {
            c.sse_stall_timeout = Duration::from_millis(v);
        }
        c
    }

    pub fn server_config(&self) -> ServerConfig {
        let mut c = ServerConfig::default();
        if let Some(l) = self.kafka_listen {
            c.listen = l;
        }
        c.advertised_host = self.advertised_host.clone();
        c.advertised_port = self.advertised_port;
        if let Some(v) = self.max_frame_bytes {
            c.frame_bytes_max = v;
        }
        if let Some(v) = self.max_inflight_bytes {
            c.inflight_bytes_max = v;
        }
        if let Some(v) = self.max_connections {
            c.connections_max = v;
        }
        if let Some(v) = self.idle_timeout_ms {
            c.idle_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.request_timeout_ms {
            c.request_timeout = Duration::from_millis(v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design
    use super::*;
    use clap::CommandFactory;

    /// The sample at the repository root.
    const SAMPLE: &str = include_str!("../../../weir.toml");

    fn parse(text: &str) -> ServeSettings {
        let dir = tempfile_dir();
        let path = dir.join("weir.toml");
        std::fs::write(&path, text).unwrap();
        ServeSettings::default().with_file(Some(&path)).unwrap()
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "weir-config-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The sample with every `# key = value` line made a setting.
    fn uncommented() -> String {
        SAMPLE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_sample_parses_as_it_is_and_with_every_line_uncommented() {
        let as_is = parse(SAMPLE);
        assert!(as_is.data_dir.is_none(), "the sample changes no default");
        let all = parse(&uncommented());
        assert_eq!(all.data_dir.as_deref(), Some(std::path::Path::new("./data")));
        assert_eq!(all.kafka_listen, Some("127.0.0.1:9092".parse().unwrap()));
        assert_eq!(all.fsync.as_deref(), Some("interval:1000"));
        assert_eq!(all.group_consumer_heartbeat_interval_ms, Some(5000));
        // And the defaults it shows are valid settings.
        all.broker_config().unwrap();
    }

    #[test]
    fn the_sample_names_every_serve_flag() {
        let text = uncommented();
        let cmd = ServeSettings::augment_args(clap::Command::new("serve"));
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert!(text.lines().any(|l| l.starts_with(&format!("{long} = "))), "weir.toml lacks {long}");
        }
        // The binary's serve command is this struct (plus --config).
        assert!(crate::Cli::command().find_subcommand("serve").is_some());
    }

    #[test]
    fn file_keys_are_the_flags_names_and_the_old_spelling_still_reads() {
        let s = parse("data-dir = \"/srv/a\"\nkafka-listen = \":0\"\nhttp_listen = \"127.0.0.1:0\"\n");
        assert_eq!(s.data_dir.as_deref(), Some(std::path::Path::new("/srv/a")));
        assert_eq!(s.kafka_listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(s.http_listen, Some("127.0.0.1:0".parse().unwrap()));
        let s = parse("data_dir = \"/srv/b\"\n");
        assert_eq!(s.data_dir.as_deref(), Some(std::path::Path::new("/srv/b")));
        let dir = tempfile_dir();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "data-dri = \"x\"\n").unwrap();
        let e = format!("{:#}", ServeSettings::default().with_file(Some(&path)).unwrap_err());
        assert!(e.contains("data-dri") && e.contains("data-dir"), "{e}");
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen(":0"), Ok("127.0.0.1:0".parse().unwrap()));
        assert_eq!(parse_listen(":9092"), Ok("127.0.0.1:9092".parse().unwrap()));
        assert_eq!(parse_listen("0.0.0.0:9092"), Ok("0.0.0.0:9092".parse().unwrap()));
        assert_eq!(parse_listen("[::1]:9092"), Ok("[::1]:9092".parse().unwrap()));
        assert!(parse_listen("localhost:9092").unwrap().ip().is_loopback());
        for bad in ["9092", ":", ":x", "host", ":99999"] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains("HOST:PORT or :PORT"), "{bad}: {e}");
        }
    }
}
