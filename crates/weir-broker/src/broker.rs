//! The broker: the set of topics on this node, their lifecycle, and background maintenance.

use crate::config::{apply_config, BrokerConfig, TopicConfig, TopicOverrides, PARTITIONS_MAX};
use crate::error::BrokerError;
use crate::group::store::TOPIC as OFFSETS_TOPIC;
use crate::group::Coordinator;
use crate::partition::Partition;
use crate::producer::ProducerIdAllocator;
use crate::topic::{hex, parse_hex, random_uuid, validate_topic_name, Topic, TopicMeta, META_FILE};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use weir_log::{read_whole, write_atomic, Clock, Storage};

/// A request to create a topic.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    /// None: the broker default.
    pub partitions: Option<i32>,
    /// None or Some(1): anything else is impossible on one node.
    pub replication_factor: Option<i16>,
    pub configs: Vec<(String, String)>,
}

/// One change of IncrementalAlterConfigs: set, or (None) reset to the default.
pub type ConfigChange = (String, Option<String>);

#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes topic creation, deletion and changes (rare; never on the data path).
    admin: Mutex<()>,
    producer_ids: Mutex<ProducerIdAllocator>,
    cluster_id: String,
    /// Set once at open; `None` only while opening.
    groups: Option<Coordinator>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NodeMeta {
    cluster_id: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Broker {
    /// Opens the data directory, recovering every topic's partitions.
    pub fn open(config: BrokerConfig, storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Broker, BrokerError> {
        let topics_dir = config.data_dir.join("topics");
        storage.create_dir_all(&topics_dir).map_err(|e| BrokerError::io(&topics_dir, e))?;
        let trash = config.data_dir.join("deleting");
        if storage.exists(&trash) {
            storage.remove_dir_all(&trash).map_err(|e| BrokerError::io(&trash, e))?;
        }
        let cluster_id = load_or_create_cluster_id(&*storage, &config.data_dir)?;
        let producer_ids = ProducerIdAllocator::open(&*storage, config.data_dir.join("producer_ids"))?;
        let mut topics = BTreeMap::new();
        for name in storage.list(&topics_dir).map_err(|e| BrokerError::io(&topics_dir, e))? {
            let dir = topics_dir.join(&name);
            if validate_topic_name(&name).is_err() || !storage.exists(&dir.join(META_FILE)) {
                tracing::warn!(dir = %dir.display(), "ignoring directory that is not a topic");
                continue;
            }
            let topic = open_topic(&config, &storage, &clock, name.clone(), dir)?;
            topics.insert(name, Arc::new(topic));
        }
        tracing::info!(topics = topics.len(), dir = %config.data_dir.display(), "broker opened");
        let group_config = config.group;
        let mut broker = Broker {
            config,
            storage,
            clock,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            producer_ids: Mutex::new(producer_ids),
            cluster_id,
            groups: None,
        };
        let store = match broker.topic(OFFSETS_TOPIC) {
            Some(t) => t,
            None => broker.create_topic(
                &NewTopic {
                    name: OFFSETS_TOPIC.to_owned(),
                    partitions: Some(1),
                    replication_factor: None,
                    configs: vec![("cleanup.policy".into(), "compact".into())],
                },
                false,
            )?,
        };
        let partition = store.partition(0).ok_or_else(|| BrokerError::Metadata {
            path: broker.config.data_dir.join("topics").join(OFFSETS_TOPIC),
            reason: "internal offsets topic has no partition 0".into(),
        })?;
        broker.groups = Some(Coordinator::open(group_config, broker.clock.clone(), partition)?);
        Ok(broker)
    }

    /// The group coordinator.
    pub fn groups(&self) -> &Coordinator {
        self.groups.as_ref().expect("set in Broker::open")
    }

    /// Internal topics (the offsets store) are listed as internal and cannot be deleted.
    pub fn is_internal(name: &str) -> bool {
        name == OFFSETS_TOPIC
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).values().find(|t| &t.id == id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, BrokerError> {
        self.topic(topic)
            .and_then(|t| t.partition(partition))
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition { topic: topic.to_owned(), partition })
    }

    /// The topic, created with defaults if it is missing and auto-creation is on.
    pub fn topic_or_auto_create(&self, name: &str) -> Result<Option<Arc<Topic>>, BrokerError> {
        if let Some(t) = self.topic(name) {
            return Ok(Some(t));
        }
        if !self.config.auto_create_topics {
            return Ok(None);
        }
        match self.create_topic(&NewTopic { name: name.to_owned(), ..NewTopic::default() }, false) {
            Ok(t) => Ok(Some(t)),
            Err(BrokerError::TopicExists(_)) => Ok(self.topic(name)),
            Err(e) => Err(e),
        }
    }

    /// Effective config of a topic from its overrides.
    pub fn resolve_config(&self, overrides: &TopicOverrides) -> Result<TopicConfig, BrokerError> {
        overrides.resolve(&self.config.log)
    }

    pub fn create_topic(&self, req: &NewTopic, validate_only: bool) -> Result<Arc<Topic>, BrokerError> {
        validate_topic_name(&req.name)?;
        let partitions = req.partitions.unwrap_or(self.config.default_partitions);
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(BrokerError::InvalidPartitions(partitions));
        }
        if let Some(rf) = req.replication_factor.filter(|&rf| rf != 1 && rf != -1) {
            return Err(BrokerError::InvalidReplicationFactor(rf));
        }
        let mut overrides = TopicOverrides::default();
        let mut check = TopicConfig::defaults(&self.config.log);
        for (k, v) in &req.configs {
            apply_config(&mut check, k, v)?;
            overrides.0.insert(k.clone(), v.clone());
        }
        check.log.validate()?;
        let _admin = lock(&self.admin);
        if self.topic(&req.name).is_some() {
            return Err(BrokerError::TopicExists(req.name.clone()));
        }
        let id = random_uuid();
        let dir = self.config.data_dir.join("topics").join(&req.name);
        let meta = TopicMeta { id: hex(&id), partitions, configs: overrides };
        if validate_only {
            return Ok(Arc::new(Topic {
                name: req.name.clone(),
                id,
                dir,
                overrides: RwLock::new(meta.configs),
                partitions: RwLock::new(Vec::new()),
            }));
        }
        self.storage.create_dir_all(&dir).map_err(|e| BrokerError::io(&dir, e))?;
        self.write_meta(&dir, &meta)?;
        let topic = Arc::new(open_topic(&self.config, &self.storage, &self.clock, req.name.clone(), dir)?);
        self.topics.write().unwrap_or_else(|e| e.into_inner()).insert(req.name.clone(), topic.clone());
        tracing::info!(topic = %req.name, partitions, "created topic");
        Ok(topic)
    }

    fn write_meta(&self, dir: &std::path::Path, meta: &TopicMeta) -> Result<(), BrokerError> {
        let path = dir.join(META_FILE);
        let json = serde_json::to_vec_pretty(meta)
            .map_err(|e| BrokerError::Metadata { path: path.clone(), reason: e.to_string() })?;
        write_atomic(&*self.storage, &path, &json).map_err(|e| BrokerError::io(&path, e))
    }

    /// Deletes a topic and its data. Readers holding its partitions finish on open files.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        if Self::is_internal(name) {
            return Err(BrokerError::InvalidRequest("internal topics cannot be deleted"));
        }
        let _admin = lock(&self.admin);
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition { topic: name.to_owned(), partition: -1 })?;
        // Move it aside first so a crash mid-delete never leaves a half topic behind.
        let trash = self.config.data_dir.join("deleting");
        self.storage.create_dir_all(&trash).map_err(|e| BrokerError::io(&trash, e))?;
        let target = trash.join(format!("{}-{}", topic.name, hex(&topic.id)));
        self.storage.rename(&topic.dir, &target).map_err(|e| BrokerError::io(&topic.dir, e))?;
        self.storage.remove_dir_all(&target).map_err(|e| BrokerError::io(&target, e))?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), BrokerError> {
        let _admin = lock(&self.admin);
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition { topic: name.to_owned(), partition: -1 })?;
        let current = topic.partition_count();
        if count <= current || count > PARTITIONS_MAX {
            return Err(BrokerError::InvalidPartitions(count));
        }
        if validate_only {
            return Ok(());
        }
        let config = self.resolve_config(&topic.overrides())?;
        let mut added = Vec::new();
        for i in current..count {
            let dir = Topic::partition_dir(&topic.dir, i);
            let p = Partition::open(dir, i, config.log, self.storage.clone(), self.clock.clone())?;
            p.set_policy(config.produce);
            added.push(Arc::new(p));
        }
        topic.partitions.write().unwrap_or_else(|e| e.into_inner()).extend(added);
        self.write_meta(&topic.dir, &topic.meta())?;
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Applies config changes to a topic (IncrementalAlterConfigs SET / DELETE).
    pub fn alter_topic_config(
        &self,
        name: &str,
        changes: &[ConfigChange],
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let _admin = lock(&self.admin);
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition { topic: name.to_owned(), partition: -1 })?;
        let mut overrides = topic.overrides();
        for (k, v) in changes {
            match v {
                Some(v) => {
                    overrides.0.insert(k.clone(), v.clone());
                }
                None => {
                    if !crate::config::TOPIC_CONFIG_KEYS.contains(&k.as_str()) {
                        return Err(BrokerError::InvalidConfig {
                            key: k.clone(),
                            value: String::new(),
                            reason: "unknown topic config",
                        });
                    }
                    overrides.0.remove(k);
                }
            }
        }
        let config = self.resolve_config(&overrides)?;
        config.log.validate()?;
        if validate_only {
            return Ok(());
        }
        for p in topic.partitions() {
            p.log.set_config(config.log)?;
            p.set_policy(config.produce);
        }
        *topic.overrides.write().unwrap_or_else(|e| e.into_inner()) = overrides;
        self.write_meta(&topic.dir, &topic.meta())
    }

    /// InitProducerId: a new producer id with epoch 0, or (KIP-360) the same id with its
    /// epoch bumped when the producer presents its current id and epoch.
    pub fn init_producer_id(&self, current: Option<(i64, i16)>) -> Result<(i64, i16), BrokerError> {
        if let Some((id, epoch)) = current.filter(|&(id, e)| id >= 0 && e >= 0) {
            if epoch < i16::MAX - 1 {
                return Ok((id, epoch + 1));
            }
        }
        let id = lock(&self.producer_ids).allocate(&*self.storage)?;
        Ok((id, 0))
    }

    /// Interval-policy flushes and age-based rolls for every partition (called every second).
    pub fn flush_due(&self) {
        for topic in self.topics() {
            for p in topic.partitions() {
                if let Err(e) = p.log.flush_if_due() {
                    tracing::error!(topic = %topic.name, partition = p.index, error = %e, "flush failed");
                }
            }
        }
    }

    /// Retention, compaction and checkpoints for every partition. Called periodically from
    /// a blocking thread; errors are logged per partition.
    pub fn run_maintenance(&self) {
        for topic in self.topics() {
            for p in topic.partitions() {
                let log = &p.log;
                let result = log
                    .enforce_retention()
                    .map(|_| ())
                    .and_then(|()| log.compact().map(|_| ()))
                    .and_then(|()| log.write_checkpoint());
                if let Err(e) = result {
                    tracing::error!(topic = %topic.name, partition = p.index, error = %e, "maintenance failed");
                }
            }
        }
    }

    /// Syncs every log and writes checkpoints and indexes (graceful shutdown).
    pub fn close(&self) -> Result<(), BrokerError> {
        let mut first_error = None;
        for topic in self.topics() {
            for p in topic.partitions() {
                if let Err(e) = p.log.close() {
                    tracing::error!(topic = %topic.name, partition = p.index, error = %e, "close failed");
                    first_error.get_or_insert(BrokerError::from(e));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn open_topic(
    config: &BrokerConfig,
    storage: &Arc<dyn Storage>,
    clock: &Arc<dyn Clock>,
    name: String,
    dir: PathBuf,
) -> Result<Topic, BrokerError> {
    let meta_path = dir.join(META_FILE);
    let bytes = read_whole(&**storage, &meta_path).map_err(|e| BrokerError::io(&meta_path, e))?;
    let meta: TopicMeta = serde_json::from_slice(&bytes)
        .map_err(|e| BrokerError::Metadata { path: meta_path.clone(), reason: e.to_string() })?;
    let id = parse_hex(&meta.id)
        .ok_or_else(|| BrokerError::Metadata { path: meta_path.clone(), reason: "bad topic id".into() })?;
    let topic_config = meta.configs.resolve(&config.log)?;
    let mut partitions = Vec::with_capacity(meta.partitions.clamp(0, PARTITIONS_MAX) as usize);
    for i in 0..meta.partitions {
        let pdir = Topic::partition_dir(&dir, i);
        let p = Partition::open(pdir, i, topic_config.log, storage.clone(), clock.clone())?;
        p.set_policy(topic_config.produce);
        partitions.push(Arc::new(p));
    }
    Ok(Topic { name, id, dir, overrides: RwLock::new(meta.configs), partitions: RwLock::new(partitions) })
}

fn load_or_create_cluster_id(storage: &dyn Storage, data_dir: &std::path::Path) -> Result<String, BrokerError> {
    let path = data_dir.join("meta.json");
    if storage.exists(&path) {
        let bytes = read_whole(storage, &path).map_err(|e| BrokerError::io(&path, e))?;
        let meta: NodeMeta = serde_json::from_slice(&bytes)
            .map_err(|e| BrokerError::Metadata { path: path.clone(), reason: e.to_string() })?;
        return Ok(meta.cluster_id);
    }
    // Kafka cluster ids are 22 characters of URL-safe base64 of a UUID.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let id = random_uuid();
    let cluster_id: String = (0..22).map(|i| ALPHABET[(id[i % 16] as usize + i * 7) % 64] as char).collect();
    let json = serde_json::to_vec(&NodeMeta { cluster_id: cluster_id.clone() })
        .map_err(|e| BrokerError::Metadata { path: path.clone(), reason: e.to_string() })?;
    write_atomic(storage, &path, &json).map_err(|e| BrokerError::io(&path, e))?;
    Ok(cluster_id)
}
