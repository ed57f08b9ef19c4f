//! `weir group list|describe|reset-offsets|delete`: consumer groups from the command line.

use crate::client::{error_name, s, Client};
use crate::output::{counted, Output};
use crate::position::{Bare, Position};
use anyhow::{bail, Context};
use clap::Subcommand;
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups with their state.
    List,
    /// Members, assignments, committed offsets, log end offsets and lag of a group.
    Describe { group: String },
    /// Move a group's committed offsets; only while the group has no active members.
    ResetOffsets {
        group: String,
        /// earliest (or beginning), latest (or end), a duration back from now (5m: the first
        /// record of the last five minutes), or a timestamp in ms since the epoch
        #[arg(long)]
        to: String,
        /// Only this topic (default: every topic the group has offsets for)
        #[arg(long)]
        topic: Option<String>,
    },
    /// Delete an empty group and its committed offsets.
    Delete { group: String },
}

const LIST_GROUPS_V: i16 = 4;
const DESCRIBE_GROUPS_V: i16 = 5;
const OFFSET_FETCH_V: i16 = 7;
const OFFSET_COMMIT_V: i16 = 8;
const LIST_OFFSETS_V: i16 = 7;
const DELETE_GROUPS_V: i16 = 2;

pub fn run(bootstrap: &str, output: Output, cmd: GroupCommand) -> anyhow::Result<()> {
    let mut c = Client::connect(bootstrap)?;
    match cmd {
        GroupCommand::List => list(&mut c, output),
        GroupCommand::Describe { group } => describe(&mut c, output, &group),
        GroupCommand::ResetOffsets { group, to, topic } => reset(&mut c, output, &group, &to, topic.as_deref()),
        GroupCommand::Delete { group } => delete(&mut c, &group),
    }
}

fn list(c: &mut Client, output: Output) -> anyhow::Result<()> {
    // Each broker lists the groups it coordinates: ask every one.
    let mut groups: Vec<(String, String, String)> = Vec::new();
    for node in c.nodes()? {
        let ResponseKind::ListGroups(r) = c.call_node(
            node,
            ApiKey::ListGroups,
            LIST_GROUPS_V,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        )?
        else {
            bail!("unexpected response")
        };
        if r.error_code != 0 {
            bail!("listing groups failed: {}", error_name(r.error_code));
        }
        groups.extend(
            r.groups.iter().map(|g| (g.group_id.0.to_string(), g.group_state.to_string(), g.protocol_type.to_string())),
        );
    }
    groups.sort();
    match output {
        Output::Json => println!(
            "{}",
            json!(groups
                .iter()
                .map(|(g, st, pt)| json!({"group": g, "state": st, "protocol_type": pt}))
                .collect::<Vec<_>>())
        ),
        Output::Table => {
            println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
            for (g, st, pt) in groups {
                println!("{g:<40} {st:<20} {pt}");
            }
        }
    }
    Ok(())
}

struct Described {
    state: String,
    members: Vec<(String, String, String, Vec<(String, i32)>)>,
}

fn describe_group(c: &mut Client, group: &str) -> anyhow::Result<Described> {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let ResponseKind::DescribeGroups(r) =
        c.call_group(group, ApiKey::DescribeGroups, DESCRIBE_GROUPS_V, RequestKind::DescribeGroups(req))?
    else {
        bail!("unexpected response")
    };
    let g = r.groups.into_iter().next().context("no group in the response")?;
    if g.error_code != 0 {
        bail!("describing group {group} failed: {}", error_name(g.error_code));
    }
    let members = g
        .members
        .into_iter()
        .map(|m| {
            let mut bytes = m.member_assignment.clone();
            let assigned = if bytes.len() >= 2 {
                let version = i16::from_be_bytes([bytes[0], bytes[1]]);
                let _ = bytes::Buf::get_i16(&mut bytes);
                ConsumerProtocolAssignment::decode(&mut bytes, version)
                    .map(|a| {
                        a.assigned_partitions
                            .iter()
                            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            (m.member_id.to_string(), m.client_id.to_string(), m.client_host.to_string(), assigned)
        })
        .collect();
    Ok(Described { state: g.group_state.to_string(), members })
}

/// Committed offsets of a group: (topic, partition) -> offset.
fn committed(c: &mut Client, group: &str) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let req = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(None);
    let ResponseKind::OffsetFetch(r) =
        c.call_group(group, ApiKey::OffsetFetch, OFFSET_FETCH_V, RequestKind::OffsetFetch(req))?
    else {
        bail!("unexpected response")
    };
    if r.error_code != 0 {
        bail!("fetching offsets of {group} failed: {}", error_name(r.error_code));
    }
    Ok(r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.committed_offset >= 0)
                .map(move |p| ((t.name.0.to_string(), p.partition_index), p.committed_offset))
        })
        .collect())
}

/// ListOffsets for every (topic, partition) at `timestamp` (-1 latest, -2 earliest).
pub(crate) fn list_offsets(
    c: &mut Client,
    parts: &[(String, i32)],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    // One request per partition leader; asked again (a few times) when a leader moved.
    const ATTEMPTS: u32 = 5;
    let mut out = BTreeMap::new();
    for attempt in 1..=ATTEMPTS {
        let mut by_node: BTreeMap<i32, BTreeMap<&str, Vec<i32>>> = BTreeMap::new();
        for (t, p) in parts {
            let node = c.leader(t, *p)?;
            by_node.entry(node).or_default().entry(t.as_str()).or_default().push(*p);
        }
        let mut moved: Vec<String> = Vec::new();
        for (node, by_topic) in by_node {
            let topics = by_topic
                .iter()
                .map(|(t, ps)| {
                    list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(s(t))).with_partitions(
                        ps.iter()
                            .map(|p| {
                                list_offsets_request::ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )
                })
                .collect();
            let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics);
            let ResponseKind::ListOffsets(r) =
                c.call_node(node, ApiKey::ListOffsets, LIST_OFFSETS_V, RequestKind::ListOffsets(req))?
            else {
                bail!("unexpected response")
            };
            for t in r.topics {
                for p in t.partitions {
                    if crate::client::is_leader_error(p.error_code) && attempt < ATTEMPTS {
                        moved.push(t.name.0.to_string());
                        continue;
                    }
                    if p.error_code != 0 {
                        bail!("offsets of {}/{}: {}", t.name.0, p.partition_index, error_name(p.error_code));
                    }
                    out.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
        if moved.is_empty() {
            break;
        }
        for t in &moved {
            c.forget_leaders(t);
        }
        std::thread::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)));
    }
    Ok(out)
}

fn describe(c: &mut Client, output: Output, group: &str) -> anyhow::Result<()> {
    let d = describe_group(c, group)?;
    if d.state == "Dead" {
        bail!("group {group} does not exist");
    }
    let committed = committed(c, group)?;
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for (id, _, _, parts) in &d.members {
        for tp in parts {
            owner.insert(tp.clone(), id.clone());
        }
    }
    let mut parts: Vec<(String, i32)> = committed.keys().cloned().chain(owner.keys().cloned()).collect();
    parts.sort();
    parts.dedup();
    let ends = if parts.is_empty() { BTreeMap::new() } else { list_offsets(c, &parts, -1)? };
    let rows: Vec<_> = parts
        .iter()
        .map(|tp| {
            let com = committed.get(tp).copied();
            let end = ends.get(tp).copied().unwrap_or(-1);
            let lag = com.map(|o| (end - o).max(0));
            (tp, com, end, lag, owner.get(tp).cloned().unwrap_or_default())
        })
        .collect();
    match output {
        Output::Json => {
            let members: Vec<_> = d
                .members
                .iter()
                .map(|(id, client, host, parts)| {
                    json!({"member_id": id, "client_id": client, "host": host,
                           "assignment": parts.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>()})
                })
                .collect();
            let partitions: Vec<_> = rows
                .iter()
                .map(|((t, p), com, end, lag, member)| {
                    json!({"topic": t, "partition": p, "committed_offset": com, "log_end_offset": end, "lag": lag, "member_id": member})
                })
                .collect();
            println!("{}", json!({"group": group, "state": d.state, "members": members, "partitions": partitions}));
        }
        Output::Table => {
            println!("group {group}: {} ({})", d.state, counted(d.members.len() as u64, "member"));
            println!("{:<30} {:>9} {:>16} {:>16} {:>10}  MEMBER", "TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG");
            for ((t, p), com, end, lag, member) in rows {
                let com = com.map_or("-".into(), |o| o.to_string());
                let lag = lag.map_or("-".into(), |l| l.to_string());
                println!("{t:<30} {p:>9} {com:>16} {end:>16} {lag:>10}  {member}");
            }
        }
    }
    Ok(())
}

fn topic_partitions(c: &mut Client, topic: &str) -> anyhow::Result<Vec<(String, i32)>> {
    let [(_, partitions, _)] = crate::topic_cmd::metadata(c, Some(&[topic]))?[..] else {
        bail!("topic {topic} does not exist")
    };
    Ok((0..partitions).map(|p| (topic.to_owned(), p)).collect())
}

fn reset(c: &mut Client, output: Output, group: &str, to: &str, topic: Option<&str>) -> anyhow::Result<()> {
    let now = weir_log::SystemClock::unix_ms();
    let position = Position::parse(to, Bare::TimestampMs, now).map_err(|e| anyhow::anyhow!("--to {e}"))?;
    let timestamp = position.list_offsets_timestamp().context("--to takes no offset")?;
    let d = describe_group(c, group)?;
    if !d.members.is_empty() {
        bail!(
            "group {group} has {} (state {}): stop its consumers before resetting offsets",
            counted(d.members.len() as u64, "active member"),
            d.state
        );
    }
    let parts: Vec<(String, i32)> = match topic {
        Some(t) => topic_partitions(c, t)?,
        None => committed(c, group)?.into_keys().collect(),
    };
    if parts.is_empty() {
        bail!("group {group} has no committed offsets; name a --topic to reset");
    }
    let mut targets = list_offsets(c, &parts, timestamp)?;
    if timestamp >= 0 {
        // No record that late: the end of the log.
        let ends = list_offsets(c, &parts, -1)?;
        for (tp, o) in targets.iter_mut() {
            if *o < 0 {
                *o = ends[tp];
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for ((t, p), o) in &targets {
        by_topic.entry(t.clone()).or_default().push((*p, *o));
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(
            by_topic
                .iter()
                .map(|(t, ps)| {
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(
                            ps.iter()
                                .map(|(p, o)| {
                                    offset_commit_request::OffsetCommitRequestPartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(*o)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let ResponseKind::OffsetCommit(r) =
        c.call_group(group, ApiKey::OffsetCommit, OFFSET_COMMIT_V, RequestKind::OffsetCommit(req))?
    else {
        bail!("unexpected response")
    };
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!("resetting {}/{} failed: {}", t.name.0, p.partition_index, error_name(p.error_code));
            }
        }
    }
    match output {
        Output::Json => println!(
            "{}",
            json!(targets
                .iter()
                .map(|((t, p), o)| json!({"topic": t, "partition": p, "offset": o}))
                .collect::<Vec<_>>())
        ),
        Output::Table => {
            println!("{:<30} {:>9} {:>16}", "TOPIC", "PARTITION", "NEW-OFFSET");
            for ((t, p), o) in &targets {
                println!("{t:<30} {p:>9} {o:>16}");
            }
        }
    }
    Ok(())
}

fn delete(c: &mut Client, group: &str) -> anyhow::Result<()> {
    let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    let ResponseKind::DeleteGroups(r) =
        c.call_group(group, ApiKey::DeleteGroups, DELETE_GROUPS_V, RequestKind::DeleteGroups(req))?
    else {
        bail!("unexpected response")
    };
    let code = r.results.first().map_or(0, |x| x.error_code);
    match code {
        0 => {
            println!("deleted group {group}");
            Ok(())
        }
        c if c == ResponseError::NonEmptyGroup.code() => {
            bail!("group {group} still has active members: stop its consumers first")
        }
        c if c == ResponseError::GroupIdNotFound.code() => bail!("group {group} does not exist"),
        c => bail!("deleting group {group} failed: {}", error_name(c)),
    }
}
