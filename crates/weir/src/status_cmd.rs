//! `weir status`: a running broker at a glance. Everything but the version comes over the
//! Kafka protocol (Metadata, ListGroups, DescribeLogDirs, ApiVersions), so it also describes
//! other Kafka-protocol brokers; the version and the HTTP listener come from the HTTP API's
//! /healthz when it answers.

use crate::client::Client;
use crate::output::{counted, Output};
use anyhow::{bail, Context};
use clap::Args;
use kafka_protocol::messages::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Broker to talk to
    #[arg(long, short = 'b', env = "WEIR_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The broker's HTTP API, HOST:PORT [default: the bootstrap host, port 9644]
    #[arg(long, env = "WEIR_HTTP")]
    http: Option<String>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
}

/// Largest /healthz answer read.
const HEALTHZ_BYTES_MAX: u64 = 64 * 1024;

/// GET /healthz over plain HTTP/1.1; None when nothing answers there as the HTTP API would.
fn healthz(addr: &str) -> Option<serde_json::Value> {
    let sock = addr.to_socket_addrs().ok()?.next()?;
    let mut conn = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(conn, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    conn.take(HEALTHZ_BYTES_MAX).read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body.trim()).ok()
}

struct Status {
    cluster_id: Option<String>,
    brokers: Vec<(i32, String)>,
    topics: Vec<(String, i32, bool)>,
    groups: Option<BTreeMap<String, u64>>,
    log_dirs: Option<Vec<(String, i64)>>,
    api_count: usize,
    version: Option<String>,
    http: Option<String>,
}

fn gather(a: &StatusArgs) -> anyhow::Result<Status> {
    let mut c = Client::connect(&a.bootstrap)?;
    let api_count = c.versions()?.len();
    let req = MetadataRequest::default().with_topics(None).with_allow_auto_topic_creation(false);
    let ResponseKind::Metadata(m) = c.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))? else {
        bail!("unexpected response")
    };
    let mut topics: Vec<(String, i32, bool)> = m
        .topics
        .iter()
        .map(|t| {
            (t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(), t.partitions.len() as i32, t.is_internal)
        })
        .collect();
    topics.sort();
    // Groups and disk usage are shown when the broker offers the APIs that tell them (other
    // Kafka-protocol brokers may not); None prints as unknown.
    let groups = if c.supports(ApiKey::ListGroups)? {
        // Each broker lists the groups it coordinates.
        let mut groups = BTreeMap::new();
        for node in c.nodes()? {
            let ResponseKind::ListGroups(g) =
                c.call_node(node, ApiKey::ListGroups, 4, RequestKind::ListGroups(ListGroupsRequest::default()))?
            else {
                bail!("unexpected response")
            };
            for group in &g.groups {
                *groups.entry(group.group_state.to_string()).or_insert(0) += 1;
            }
        }
        Some(groups)
    } else {
        None
    };
    let log_dirs = if c.supports(ApiKey::DescribeLogDirs)? {
        let req = DescribeLogDirsRequest::default().with_topics(None);
        let ResponseKind::DescribeLogDirs(d) = c.call(ApiKey::DescribeLogDirs, 4, RequestKind::DescribeLogDirs(req))?
        else {
            bail!("unexpected response")
        };
        Some(
            d.results
                .iter()
                .map(|r| {
                    let bytes = r.topics.iter().flat_map(|t| &t.partitions).map(|p| p.partition_size.max(0)).sum();
                    (r.log_dir.to_string(), bytes)
                })
                .collect(),
        )
    } else {
        None
    };
    let http = a.http.clone().unwrap_or_else(|| {
        let host = a.bootstrap.rsplit_once(':').map_or(a.bootstrap.as_str(), |(h, _)| h);
        format!("{host}:9644")
    });
    let health = healthz(&http);
    Ok(Status {
        cluster_id: m.cluster_id.map(|c| c.to_string()),
        brokers: m.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect(),
        topics,
        groups,
        log_dirs,
        api_count,
        version: health.as_ref().and_then(|h| h.get("version")?.as_str().map(str::to_owned)),
        http: health.is_some().then_some(http),
    })
}

pub fn run(a: &StatusArgs) -> anyhow::Result<()> {
    let st = gather(a).context("reading the broker's status")?;
    let partitions: i64 = st.topics.iter().map(|(_, p, _)| i64::from(*p)).sum();
    let bytes: Option<i64> = st.log_dirs.as_ref().map(|d| d.iter().map(|(_, b)| b).sum());
    match a.output {
        Output::Json => println!(
            "{}",
            json!({
                "version": st.version,
                "cluster_id": st.cluster_id,
                "listeners": {"kafka": st.brokers.iter().map(|(_, addr)| addr).collect::<Vec<_>>(), "http": st.http},
                "brokers": st.brokers.iter().map(|(id, addr)| json!({"node_id": id, "address": addr})).collect::<Vec<_>>(),
                "api_keys": st.api_count,
                "topics": st.topics.iter().map(|(n, p, i)| json!({"name": n, "partitions": p, "internal": i})).collect::<Vec<_>>(),
                "partitions": partitions,
                "groups": st.groups,
                "log_dirs": st.log_dirs.as_ref().map(|d| d.iter().map(|(d, b)| json!({"path": d, "bytes": b})).collect::<Vec<_>>()),
                "disk_bytes": bytes,
            })
        ),
        Output::Table => {
            let version = st.version.as_deref().unwrap_or("unknown (no Weir HTTP API answered)");
            println!("{:<12} {version}", "version");
            if let Some(id) = &st.cluster_id {
                println!("{:<12} {id}", "cluster");
            }
            for (id, addr) in &st.brokers {
                println!("{:<12} {addr} (node {id}, {})", "kafka", counted(st.api_count as u64, "API"));
            }
            println!("{:<12} {}", "http", st.http.as_deref().unwrap_or("-"));
            let user = st.topics.iter().filter(|(_, _, internal)| !internal).count();
            println!(
                "{:<12} {} ({} internal), {}",
                "topics",
                user,
                st.topics.len() - user,
                counted(partitions as u64, "partition")
            );
            match &st.groups {
                Some(groups) => {
                    let total: u64 = groups.values().sum();
                    let states: Vec<String> = groups.iter().map(|(state, n)| format!("{n} {state}")).collect();
                    let states = if states.is_empty() { String::new() } else { format!(" ({})", states.join(", ")) };
                    println!("{:<12} {}{states}", "groups", total);
                }
                None => println!("{:<12} unknown (the broker does not support ListGroups)", "groups"),
            }
            match &st.log_dirs {
                Some(dirs) => {
                    for (dir, b) in dirs {
                        println!("{:<12} {} in {dir}", "disk", human_bytes(*b));
                    }
                }
                None => println!("{:<12} unknown (the broker does not support DescribeLogDirs)", "disk"),
            }
        }
    }
    Ok(())
}

/// Bytes in binary units, one decimal: `1.5 MiB`.
fn human_bytes(b: i64) -> String {
    let mut v = b as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 || unit == "TiB" {
            return if unit == "B" { format!("{b} B") } else { format!("{v:.1} {unit}") };
        }
        v /= 1024.0;
    }
    format!("{b} B")
}
