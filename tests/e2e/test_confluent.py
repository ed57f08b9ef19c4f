"""confluent-kafka (bundled recent librdkafka) against weir."""

import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


def admin(w):
    return AdminClient({"bootstrap.servers": w.bootstrap})


def create(w, name, partitions, config=None):
    a = admin(w)  # keep the client alive until the futures resolve
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})])
    for f in fs.values():
        f.result(timeout=10)


def consume_assigned(w, topic, partitions, expected, timeout=60):
    c = Consumer({
        "bootstrap.servers": w.bootstrap,
        "group.id": "unused-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            assert m.error() is None, m.error()
            got.append((m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1]))
    c.close()
    return got


def test_idempotent_acks_all_100k_then_assign_consumer_reads_all(weir):
    create(weir, "orders", 3)
    p = Producer({
        "bootstrap.servers": weir.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    })
    errors = []
    acked = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset()))

    n = 100_000
    for i in range(n):
        while True:
            try:
                p.produce("orders", key=str(i % 1000).encode(), value=f"order-{i}".encode(), on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert errors == []
    assert len(acked) == n
    assert len(set(acked)) == n, "every acknowledged message has its own offset"

    got = consume_assigned(weir, "orders", 3, n)
    assert len(got) == n
    assert sorted(v for _, _, _, v, _ in got) == sorted(f"order-{i}".encode() for i in range(n))
    # Per key, the order of production is kept.
    last = {}
    for _, _, k, v, _ in sorted(got, key=lambda r: (r[0], r[1])):
        i = int(v.split(b"-")[1])
        assert last.get(k, -1) < i
        last[k] = i


def test_offsets_for_times(weir):
    create(weir, "timed", 1)
    p = Producer({"bootstrap.servers": weir.bootstrap, "linger.ms": 0})
    base = 1_700_000_000_000
    for i in range(100):
        p.produce("timed", value=f"v{i}".encode(), timestamp=base + i * 1000, partition=0)
        p.flush(10)  # one batch per message, so lookups cross batches
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "unused"})
    for i in [0, 1, 42, 99]:
        [tp] = c.offsets_for_times([TopicPartition("timed", 0, base + i * 1000 - 500)], timeout=10)
        assert tp.offset == i, (i, tp.offset)
    [tp] = c.offsets_for_times([TopicPartition("timed", 0, base + 10**9)], timeout=10)
    assert tp.offset == -1, "no record that late: end offset marker (-1)"
    low, high = c.get_watermark_offsets(TopicPartition("timed", 0), timeout=10)
    assert (low, high) == (0, 100)
    c.close()


def test_admin_create_describe_alter_delete(weir):
    a = admin(weir)
    create(weir, "configured", 2, {"retention.ms": "3600000", "cleanup.policy": "compact"})
    md = a.list_topics(timeout=10)
    assert len(md.topics["configured"].partitions) == 2

    res = ConfigResource(ConfigResource.Type.TOPIC, "configured")
    configs = a.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "compact"
    assert not configs["retention.ms"].is_default
    assert configs["segment.bytes"].is_default

    # Duplicate creation and bad configs get Kafka's errors.
    dup = a.create_topics([NewTopic("configured", 1, 1)])["configured"]
    try:
        dup.result(timeout=10)
        raise AssertionError("duplicate create succeeded")
    except KafkaException as e:
        assert e.args[0].name() == "TOPIC_ALREADY_EXISTS"
    bad = a.create_topics([NewTopic("bad-config", 1, 1, config={"retention.ms": "soon"})])["bad-config"]
    try:
        bad.result(timeout=10)
        raise AssertionError("bad config accepted")
    except KafkaException as e:
        assert e.args[0].name() == "INVALID_CONFIG"

    # IncrementalAlterConfigs.
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    res = ConfigResource(ConfigResource.Type.TOPIC, "configured",
                         incremental_configs=[ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(timeout=10)
    configs = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "configured")])
    [f] = configs.values()
    assert f.result(timeout=10)["retention.ms"].value == "7200000"

    # CreatePartitions.
    from confluent_kafka.admin import NewPartitions

    for f in a.create_partitions([NewPartitions("configured", 5)]).values():
        f.result(timeout=10)
    assert len(a.list_topics(timeout=10).topics["configured"].partitions) == 5

    for f in a.delete_topics(["configured"]).values():
        f.result(timeout=10)
    assert "configured" not in a.list_topics(timeout=10).topics


def test_delete_records_moves_low_watermark(weir):
    create(weir, "trimmed", 1)
    p = Producer({"bootstrap.servers": weir.bootstrap})
    for i in range(50):
        p.produce("trimmed", value=b"x", partition=0)
    p.flush(10)
    a = admin(weir)
    [f] = a.delete_records([TopicPartition("trimmed", 0, 20)]).values()
    assert f.result(timeout=10).low_watermark == 20
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "unused"})
    assert c.get_watermark_offsets(TopicPartition("trimmed", 0), timeout=10) == (20, 50)
    c.close()


def test_init_transactions_fails_fast_naming_the_missing_feature(weir):
    """Until transactions exist, a transactional producer must fail at once with an error
    that says transactions are unsupported, not retry until transaction.timeout.ms."""
    p = Producer({"bootstrap.servers": weir.bootstrap, "transactional.id": "tx-1",
                  "transaction.timeout.ms": 60000})
    started = time.monotonic()
    try:
        p.init_transactions(30)
        raise AssertionError("init_transactions succeeded against a broker without transactions")
    except KafkaException as e:
        took = time.monotonic() - started
        err = e.args[0]
        print(f"init_transactions failed after {took:.2f}s: {err}")
        assert took < 5, f"took {took:.1f}s"
        assert not err.retriable(), err
        assert "transactions are not supported" in err.str(), err.str()
    # The broker keeps serving non-transactional producers.
    create(weir, "after-tx", 1)
    ok = Producer({"bootstrap.servers": weir.bootstrap, "enable.idempotence": True})
    ok.produce("after-tx", b"v")
    assert ok.flush(10) == 0


def test_topic_creation_with_every_kafka_topic_config(weir):
    from kafka_topic_configs import KAFKA_TOPIC_CONFIGS

    create(weir, "all-configs", 1, dict(KAFKA_TOPIC_CONFIGS))
    a = admin(weir)  # kept alive until the futures resolve
    res = ConfigResource(ConfigResource.Type.TOPIC, "all-configs")
    described = a.describe_configs([res])[res].result(timeout=10)
    for k, v in KAFKA_TOPIC_CONFIGS.items():
        assert described[k].value == v, (k, described[k].value, v)
        assert not described[k].is_default, k  # set explicitly: DYNAMIC_TOPIC_CONFIG
        assert not described[k].is_read_only, k
    # Unknown names are still refused, and so is tiered storage.
    for bad in ({"no.such.config": "1"}, {"remote.storage.enable": "true"}):
        f = a.create_topics([NewTopic("refused", 1, 1, config=bad)])["refused"]
        try:
            f.result(timeout=10)
            raise AssertionError(f"{bad} accepted")
        except KafkaException as e:
            assert e.args[0].name() == "INVALID_CONFIG", e


def test_log_append_time_topic_stamps_records_with_the_broker_time(weir):
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME

    create(weir, "stamped", 1, {"message.timestamp.type": "LogAppendTime"})
    create(weir, "unstamped", 1)
    p = Producer({"bootstrap.servers": weir.bootstrap})
    before = int(time.time() * 1000)
    for t in ("stamped", "unstamped"):
        for i in range(3):
            p.produce(t, value=f"v{i}".encode(), timestamp=1_000_000 + i)
    assert p.flush(10) == 0
    after = int(time.time() * 1000)
    for t in ("stamped", "unstamped"):
        c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "ts", "enable.auto.commit": False})
        c.assign([TopicPartition(t, 0, 0)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            got += [m.timestamp() for m in c.consume(10, timeout=0.5) if m.error() is None]
        c.close()
        assert len(got) == 3
        if t == "stamped":
            assert all(kind == TIMESTAMP_LOG_APPEND_TIME and before - 1000 <= ts <= after + 1000 for kind, ts in got), got
        else:
            assert got == [(TIMESTAMP_CREATE_TIME, 1_000_000 + i) for i in range(3)], got


def test_error_codes_are_counted_per_api_and_name_and_logged_with_the_correlation_id(weir_factory, monkeypatch):
    import re

    import requests
    from prometheus_client.parser import text_string_to_metric_families

    monkeypatch.setenv("WEIR_LOG", "info,weir_server=debug")
    w = weir_factory()
    p = Producer({"bootstrap.servers": w.bootstrap, "transactional.id": "tx-metrics"})
    try:
        p.init_transactions(10)
    except KafkaException:
        pass
    a = admin(w)
    res = ConfigResource(ConfigResource.Type.TOPIC, "no-such-topic")
    try:
        a.describe_configs([res])[res].result(timeout=10)
    except KafkaException:
        pass
    text = requests.get(f"{w.http}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    errors = {(s.labels["api"], s.labels["error"]): s.value for s in families["weir_kafka_request_errors"].samples}
    assert errors.get(("FindCoordinator", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"), 0) >= 1, errors
    assert errors.get(("DescribeConfigs", "UNKNOWN_TOPIC_OR_PARTITION"), 0) >= 1, errors
    with open(w.log_path) as f:
        log = f.read()
    assert re.search(r"api=FindCoordinator.*correlation_id=\d+.*error=TRANSACTIONAL_ID_AUTHORIZATION_FAILED", log), \
        "debug line with the correlation id"


def test_out_of_range_topic_configs_are_refused_naming_key_value_and_range(weir):
    """#19: retention.ms=-5 used to be stored as -1; every value is range-checked the same
    way on CreateTopics and IncrementalAlterConfigs."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

    a = admin(weir)
    cases = [("retention.ms", "-5", "at least -1"), ("segment.bytes", "0", "at least 1024"),
             ("min.cleanable.dirty.ratio", "1.5", "between 0 and 1"), ("max.compaction.lag.ms", "0", "at least 1"),
             ("segment.index.bytes", "3", "at least 4"), ("compression.lz4.level", "18", "between 1 and 17")]
    for key, value, valid in cases:
        f = a.create_topics([NewTopic("refused", 1, 1, config={key: value})])["refused"]
        try:
            f.result(timeout=10)
            raise AssertionError(f"{key}={value} accepted")
        except KafkaException as e:
            err = e.args[0]
            assert err.name() == "INVALID_CONFIG", err
            assert key in err.str() and value in err.str() and valid in err.str(), err.str()
    assert "refused" not in a.list_topics(timeout=10).topics
    create(weir, "ranged", 1, {"retention.ms": "-1"})
    res = ConfigResource(ConfigResource.Type.TOPIC, "ranged",
                         incremental_configs=[ConfigEntry("retention.ms", "-5",
                                                          incremental_operation=AlterConfigOpType.SET)])
    try:
        a.incremental_alter_configs([res])[res].result(timeout=10)
        raise AssertionError("retention.ms=-5 accepted by IncrementalAlterConfigs")
    except KafkaException as e:
        assert e.args[0].name() == "INVALID_CONFIG" and "at least -1" in e.args[0].str(), e
    described = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "ranged")])
    [cfg] = [f.result(timeout=10) for f in described.values()]
    assert cfg["retention.ms"].value == "-1", "the refused value was not stored"


def test_segment_index_bytes_rolls_segments_and_deleted_ones_wait_for_file_delete_delay(weir_factory):
    """segment.index.bytes=80 with an index entry per batch: a segment rolls every 11 batches.
    Retention then renames expired segments *.deleted, and they stay for file.delete.delay.ms."""
    import os

    from conftest import wait_for

    w = weir_factory("--maintenance-interval-ms", "100")
    create(w, "rolled", 1, {"segment.index.bytes": "80", "index.interval.bytes": "0",
                            "retention.ms": "1000", "file.delete.delay.ms": "1500"})
    p = Producer({"bootstrap.servers": w.bootstrap, "linger.ms": 0})
    # One timestamp for all: the time index (also sized by segment.index.bytes) then holds one
    # entry, and the offset index alone decides the rolls, however slow the machine is.
    ts = int(time.time() * 1000)
    for i in range(45):
        p.produce("rolled", value=f"m{i}".encode(), timestamp=ts)
        p.flush(10)  # one batch per message
    pdir = os.path.join(w.data_dir, "topics", "rolled", "0")
    logs = sorted(n for n in os.listdir(pdir) if n.endswith(".log"))
    assert logs[:4] == [f"{b:020}.log" for b in (0, 11, 22, 33)], logs
    wait_for(lambda: any(n.endswith(".log.deleted") for n in os.listdir(pdir)), what="segments renamed .deleted")
    seen = time.monotonic()
    assert f"{0:020}.log" not in os.listdir(pdir)
    wait_for(lambda: not any(n.endswith(".deleted") for n in os.listdir(pdir)), what=".deleted files removed")
    assert time.monotonic() - seen >= 1.2, "removed only after file.delete.delay.ms"
