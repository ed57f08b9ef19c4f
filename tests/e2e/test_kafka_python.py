"""kafka-python (old, non-flexible protocol versions) against weir."""

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def test_produce_and_consume_10k(weir):
    admin = KafkaAdminClient(bootstrap_servers=weir.bootstrap)
    admin.create_topics([NewTopic("kp", num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=weir.bootstrap, acks="all", linger_ms=5)
    futures = [producer.send("kp", key=str(i % 7).encode(), value=f"m{i}".encode()) for i in range(10_000)]
    producer.flush(30)
    metas = [f.get(timeout=30) for f in futures]
    assert len({(m.partition, m.offset) for m in metas}) == 10_000
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=weir.bootstrap, group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    consumer.assign([TopicPartition("kp", 0), TopicPartition("kp", 1)])
    consumer.seek_to_beginning()
    values = [m.value for m in consumer]
    consumer.close()
    assert sorted(values) == sorted(f"m{i}".encode() for i in range(10_000))


def test_admin_create_and_delete(weir):
    admin = KafkaAdminClient(bootstrap_servers=weir.bootstrap)
    admin.create_topics([NewTopic("kp-admin", num_partitions=3, replication_factor=1)])
    assert "kp-admin" in admin.list_topics()
    admin.delete_topics(["kp-admin"])
    assert "kp-admin" not in admin.list_topics()
    admin.close()


def test_topic_creation_with_every_kafka_topic_config(weir):
    from kafka.admin import ConfigResource, ConfigResourceType

    from kafka_topic_configs import KAFKA_TOPIC_CONFIGS

    admin = KafkaAdminClient(bootstrap_servers=weir.bootstrap)
    admin.create_topics([NewTopic("kp-all-configs", num_partitions=1, replication_factor=1,
                                  topic_configs=dict(KAFKA_TOPIC_CONFIGS))])
    [resp] = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-all-configs")])
    entries = {e[0]: e[1] for e in resp.resources[0][4]}
    for k, v in KAFKA_TOPIC_CONFIGS.items():
        assert entries.get(k) == v, (k, entries.get(k), v)
    admin.close()


def test_out_of_range_configs_are_refused_on_create_and_legacy_alter(weir):
    """kafka-python's admin uses CreateTopics and the legacy AlterConfigs: both refuse an
    out-of-range value with INVALID_CONFIG and store nothing."""
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import InvalidConfigurationError

    admin = KafkaAdminClient(bootstrap_servers=weir.bootstrap)
    try:
        admin.create_topics([NewTopic("kp-bad", 1, 1, topic_configs={"retention.ms": "-5"})])
        raise AssertionError("retention.ms=-5 accepted")
    except InvalidConfigurationError as e:  # the message quotes the response, with its error message
        assert "retention.ms" in str(e) and "at least -1" in str(e), e
    assert "kp-bad" not in admin.list_topics()
    admin.create_topics([NewTopic("kp-ranged", 1, 1, topic_configs={"segment.bytes": "1048576"})])
    resp = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-ranged", {"segment.bytes": "0"})])
    [(code, message, _type, name)] = resp.resources
    assert code == InvalidConfigurationError.errno and name == "kp-ranged", resp
    assert "segment.bytes" in message and "at least 1024" in message, message
    [resp] = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kp-ranged")])
    entries = {e[0]: e[1] for e in resp.resources[0][4]}
    assert entries["segment.bytes"] == "1048576", "the refused value was not stored"
    admin.close()


def test_describe_log_dirs_reports_partition_sizes(weir):
    """DescribeLogDirs v0 (kafka-python): one log dir with every partition's real size."""
    admin = KafkaAdminClient(bootstrap_servers=weir.bootstrap)
    admin.create_topics([NewTopic("kp-dirs", num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=weir.bootstrap, acks="all")
    for i in range(100):
        producer.send("kp-dirs", value=b"x" * 100, partition=1)
    producer.flush(30)
    producer.close()
    resp = admin.describe_log_dirs()
    [(error, log_dir, topics)] = resp.log_dirs
    assert error == 0 and log_dir.endswith("topics"), resp
    sizes = {p[0]: p[1] for name, parts in topics if name == "kp-dirs" for p in parts}
    assert sizes[0] == 0 and sizes[1] > 100 * 100, sizes
    admin.close()
