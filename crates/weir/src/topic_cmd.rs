//! `weir topic create|list|describe|delete|alter` over the Kafka protocol.

pub(crate) use crate::client::error_name;
use crate::client::{s, Client};
use crate::output::{counted, Output};
use anyhow::{bail, Context};
use clap::Subcommand;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions (default: the broker's default)
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Topic config, repeatable: -c retention.ms=3600000
        #[arg(long = "config", short = 'c', value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// List topics, in name order. Rows are printed as they are read; --limit and --after
    /// page through a broker with many topics.
    List {
        /// Print at most this many topics (the command says how to get the next page)
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this topic name (the last one of the previous page)
        #[arg(long)]
        after: Option<String>,
    },
    /// Partitions with offsets, and configs.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Set (-c key=value) or reset to default (-c key=) topic configs.
    Alter {
        name: String,
        #[arg(long = "config", short = 'c', value_parser = parse_kv, required = true)]
        configs: Vec<(String, String)>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("expected key=value, got {s:?}"))
}

pub fn run(bootstrap: &str, output: Output, cmd: TopicCommand) -> anyhow::Result<()> {
    let mut c = Client::connect(bootstrap)?;
    match cmd {
        TopicCommand::Create { name, partitions, configs } => create(&mut c, &name, partitions, configs),
        TopicCommand::List { limit, after } => list(&mut c, output, limit, after.as_deref()),
        TopicCommand::Describe { name } => describe(&mut c, output, &name),
        TopicCommand::Delete { name } => delete(&mut c, &name),
        TopicCommand::Alter { name, configs } => alter(&mut c, &name, configs),
    }
}

fn create(c: &mut Client, name: &str, partitions: Option<i32>, configs: Vec<(String, String)>) -> anyhow::Result<()> {
    let topic = create_topics_request::CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(partitions.unwrap_or(-1))
        .with_replication_factor(-1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    create_topics_request::CreatableTopicConfig::default().with_name(s(k)).with_value(Some(s(v)))
                })
                .collect(),
        );
    let req = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000);
    let ResponseKind::CreateTopics(r) = c.call(ApiKey::CreateTopics, 5, RequestKind::CreateTopics(req))? else {
        bail!("unexpected response")
    };
    let t = r.topics.first().context("empty response")?;
    if t.error_code != 0 {
        bail!("creating topic {name}: {} {}", error_name(t.error_code), t.error_message.as_deref().unwrap_or(""));
    }
    println!("created topic {name} with {}", counted(t.num_partitions.max(0) as u64, "partition"));
    Ok(())
}

/// Topic names and partition counts (all, or the named ones); errors for unknown names.
pub(crate) fn metadata(c: &mut Client, names: Option<&[&str]>) -> anyhow::Result<Vec<(String, i32, bool)>> {
    metadata_with(c, names, false)
}

/// Metadata that asks the broker to create missing topics, as a Kafka producer does: the
/// broker's `auto.create.topics.enable` decides, the same rule for every front end.
pub(crate) fn metadata_for_produce(c: &mut Client, topic: &str) -> anyhow::Result<i32> {
    match metadata_with(c, Some(&[topic]), true)?[..] {
        [(_, partitions, _)] => Ok(partitions),
        _ => bail!("topic {topic} does not exist"),
    }
}

fn metadata_with(
    c: &mut Client,
    names: Option<&[&str]>,
    auto_create: bool,
) -> anyhow::Result<Vec<(String, i32, bool)>> {
    let topics = names.map(|ns| {
        ns.iter().map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(n))))).collect()
    });
    let req = MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(auto_create);
    let ResponseKind::Metadata(r) = c.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))? else {
        bail!("unexpected response")
    };
    let mut out = Vec::new();
    for t in r.topics {
        let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
        if t.error_code == ResponseError::UnknownTopicOrPartition.code() && auto_create {
            bail!(
                "topic {name} does not exist and the broker does not create topics on first use \
                 (auto.create.topics.enable=false): create it with `weir topic create {name}`"
            );
        }
        if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
            bail!("topic {name} does not exist");
        }
        if t.error_code != 0 {
            bail!("topic {name}: {}", error_name(t.error_code));
        }
        out.push((name, t.partitions.len() as i32, t.is_internal));
    }
    out.sort();
    Ok(out)
}

fn list(c: &mut Client, output: Output, limit: Option<usize>, after: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    let topics = metadata(c, None)?;
    let start = after.map_or(0, |a| topics.partition_point(|(n, _, _)| n.as_str() <= a));
    let rest = &topics[start..];
    let page = &rest[..limit.unwrap_or(usize::MAX).min(rest.len())];
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match output {
        Output::Json => {
            // One array, written element by element.
            write!(out, "[")?;
            for (i, (n, p, internal)) in page.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                write!(out, "{sep}{}", json!({"name": n, "partitions": p, "internal": internal}))?;
            }
            writeln!(out, "]")?;
        }
        Output::Table => {
            writeln!(out, "{:<40} {:>10}", "TOPIC", "PARTITIONS")?;
            for (n, p, internal) in page {
                writeln!(out, "{:<40} {p:>10}{}", n, if *internal { "  (internal)" } else { "" })?;
            }
        }
    }
    out.flush()?;
    if page.len() < rest.len() {
        if let Some((last, _, _)) = page.last() {
            eprintln!("{} more; next page: --after {last}", counted((rest.len() - page.len()) as u64, "topic"));
        }
    }
    Ok(())
}

/// Earliest and latest offsets of every partition.
/// Offsets of every partition of a topic at `timestamp` (-1 latest, -2 earliest), by index.
pub(crate) fn offsets(c: &mut Client, topic: &str, partitions: i32, timestamp: i64) -> anyhow::Result<Vec<i64>> {
    let parts: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_owned(), p)).collect();
    let found = crate::group_cmd::list_offsets(c, &parts, timestamp)?;
    Ok(parts.iter().map(|tp| found.get(tp).copied().unwrap_or(-1)).collect())
}

fn describe(c: &mut Client, output: Output, name: &str) -> anyhow::Result<()> {
    let [(_, partitions, internal)] = metadata(c, Some(&[name]))?[..] else { bail!("topic {name} does not exist") };
    let starts = offsets(c, name, partitions, -2)?;
    let ends = offsets(c, name, partitions, -1)?;
    // Configs when the broker can tell them (None: it has no DescribeConfigs; shown as such).
    let configs: Option<BTreeMap<String, String>> = if c.supports(ApiKey::DescribeConfigs)? {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(name))
                .with_configuration_keys(None),
        ]);
        let ResponseKind::DescribeConfigs(r) = c.call(ApiKey::DescribeConfigs, 4, RequestKind::DescribeConfigs(req))?
        else {
            bail!("unexpected response")
        };
        Some(
            r.results
                .iter()
                .flat_map(|res| {
                    res.configs.iter().map(|c| (c.name.to_string(), c.value.as_deref().unwrap_or("").to_owned()))
                })
                .collect(),
        )
    } else {
        None
    };
    match output {
        Output::Json => println!(
            "{}",
            json!({"name": name, "internal": internal,
                   "partitions": (0..partitions as usize).map(|p| json!({"partition": p, "log_start_offset": starts[p], "log_end_offset": ends[p]})).collect::<Vec<_>>(),
                   "configs": configs})
        ),
        Output::Table => {
            println!("topic {name}: {}", counted(partitions.max(0) as u64, "partition"));
            println!("{:>9} {:>16} {:>16} {:>12}", "PARTITION", "START", "END", "RECORDS");
            for p in 0..partitions as usize {
                println!("{p:>9} {:>16} {:>16} {:>12}", starts[p], ends[p], ends[p] - starts[p]);
            }
            match configs {
                Some(configs) => {
                    println!("configs:");
                    for (k, v) in configs {
                        println!("  {k} = {v}");
                    }
                }
                None => println!("configs: unknown (the broker does not support DescribeConfigs)"),
            }
        }
    }
    Ok(())
}

fn delete(c: &mut Client, name: &str) -> anyhow::Result<()> {
    let req = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s(name))]).with_timeout_ms(30_000);
    let ResponseKind::DeleteTopics(r) = c.call(ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(req))? else {
        bail!("unexpected response")
    };
    match r.responses.first().map_or(0, |x| x.error_code) {
        0 => {
            println!("deleted topic {name}");
            Ok(())
        }
        3 => bail!("topic {name} does not exist"),
        code => bail!("deleting topic {name}: {}", error_name(code)),
    }
}

fn alter(c: &mut Client, name: &str, configs: Vec<(String, String)>) -> anyhow::Result<()> {
    let changes = configs
        .iter()
        .map(|(k, v)| {
            let (op, value) = if v.is_empty() { (1, None) } else { (0, Some(s(v))) };
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(op)
                .with_value(value)
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_configs(changes),
    ]);
    let ResponseKind::IncrementalAlterConfigs(r) =
        c.call(ApiKey::IncrementalAlterConfigs, 1, RequestKind::IncrementalAlterConfigs(req))?
    else {
        bail!("unexpected response")
    };
    let res = r.responses.first().context("empty response")?;
    match res.error_code {
        0 => {
            println!("altered topic {name}");
            Ok(())
        }
        3 => bail!("topic {name} does not exist"),
        code => bail!("altering topic {name}: {} {}", error_name(code), res.error_message.as_deref().unwrap_or("")),
    }
}
