//! The consumer embedded protocol (the bytes inside JoinGroup metadata and SyncGroup
//! assignments: ConsumerProtocolSubscription and ConsumerProtocolAssignment, each a version
//! then the message), read and written with the `kafka-protocol` codec for the group
//! coordinator's online migration between classic and KIP-848 groups.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::{self as cpa, ConsumerProtocolAssignment};
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use weir_broker::group::consumer::ConsumerProtocol;

/// Versions of the two messages this codec reads and writes.
const VERSION_MAX: i16 = 3;

pub(crate) struct KafkaConsumerProtocol;

fn version_of(bytes: &[u8]) -> Result<i16, String> {
    if bytes.len() < 2 {
        return Err("shorter than its version".into());
    }
    let v = i16::from_be_bytes([bytes[0], bytes[1]]);
    if !(0..=VERSION_MAX).contains(&v) {
        return Err(format!("version {v} is not 0..={VERSION_MAX}"));
    }
    Ok(v)
}

impl ConsumerProtocol for KafkaConsumerProtocol {
    fn subscription(&self, metadata: &[u8]) -> Result<(Vec<String>, Vec<(String, i32)>), String> {
        let version = version_of(metadata)?;
        let mut buf = Bytes::copy_from_slice(&metadata[2..]);
        let s = ConsumerProtocolSubscription::decode(&mut buf, version)
            .map_err(|e| format!("subscription v{version}: {e}"))?;
        let owned = s
            .owned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.0.to_string(), *p)))
            .collect();
        Ok((s.topics.iter().map(|t| t.to_string()).collect(), owned))
    }

    fn assignment(&self, assignment: &[u8]) -> Result<Vec<(String, i32)>, String> {
        let version = version_of(assignment)?;
        let mut buf = Bytes::copy_from_slice(&assignment[2..]);
        let a =
            ConsumerProtocolAssignment::decode(&mut buf, version).map_err(|e| format!("assignment v{version}: {e}"))?;
        if a.user_data.as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(
                "the assignment carries an assignor's user data, which the broker's assignment would lose".into()
            );
        }
        Ok(a.assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.0.to_string(), *p)))
            .collect())
    }

    fn encode_assignment(&self, metadata: &[u8], partitions: &[(String, i32)]) -> Bytes {
        let version = version_of(metadata).unwrap_or(0);
        let mut by_topic: Vec<cpa::TopicPartition> = Vec::new();
        for (topic, p) in partitions {
            match by_topic.last_mut() {
                Some(t) if t.topic.0.as_str() == topic => t.partitions.push(*p),
                _ => by_topic.push(
                    cpa::TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![*p]),
                ),
            }
        }
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(by_topic);
        let mut out = BytesMut::new();
        out.put_i16(version);
        // Every field is defined in versions 0-3: encoding cannot fail.
        if let Err(e) = a.encode(&mut out, version) {
            tracing::error!(error = %e, version, "encoding a consumer assignment");
        }
        out.freeze()
    }

    fn encode_subscription(&self, topics: &[String]) -> Bytes {
        let version = 0;
        let s = ConsumerProtocolSubscription::default()
            .with_topics(topics.iter().map(|t| StrBytes::from_string(t.clone())).collect());
        let mut out = BytesMut::new();
        out.put_i16(version);
        if let Err(e) = s.encode(&mut out, version) {
            tracing::error!(error = %e, "encoding a consumer subscription");
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design
    use super::*;
    use kafka_protocol::messages::consumer_protocol_subscription as cps;

    #[test]
    fn subscriptions_and_assignments_round_trip_in_every_version() {
        let codec = KafkaConsumerProtocol;
        for version in 0..=VERSION_MAX {
            let mut sub = ConsumerProtocolSubscription::default()
                .with_topics(vec![StrBytes::from_static_str("a"), StrBytes::from_static_str("b")]);
            if version >= 1 {
                sub = sub.with_owned_partitions(vec![cps::TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_static_str("a")))
                    .with_partitions(vec![0, 2])]);
            }
            let mut md = BytesMut::new();
            md.put_i16(version);
            sub.encode(&mut md, version).unwrap();
            let (topics, owned) = codec.subscription(&md).unwrap();
            assert_eq!(topics, ["a", "b"]);
            let want: Vec<(String, i32)> =
                if version >= 1 { vec![("a".into(), 0), ("a".into(), 2)] } else { Vec::new() };
            assert_eq!(owned, want);
            let parts = vec![("a".to_owned(), 1), ("a".to_owned(), 3), ("b".to_owned(), 0)];
            let bytes = codec.encode_assignment(&md, &parts);
            assert_eq!(version_of(&bytes).unwrap(), version);
            assert_eq!(codec.assignment(&bytes).unwrap(), parts);
        }
        let sub = codec.encode_subscription(&["x".to_owned(), "y".to_owned()]);
        assert_eq!(codec.subscription(&sub).unwrap(), (vec!["x".to_owned(), "y".to_owned()], Vec::new()));
        assert!(codec.subscription(&[0]).is_err());
        assert!(codec.subscription(&[0, 9, 0]).unwrap_err().contains("version 9"));
        let mut with_data = BytesMut::new();
        with_data.put_i16(0);
        ConsumerProtocolAssignment::default()
            .with_user_data(Some(Bytes::from_static(b"sticky")))
            .encode(&mut with_data, 0)
            .unwrap();
        assert!(codec.assignment(&with_data).unwrap_err().contains("user data"));
    }
}
