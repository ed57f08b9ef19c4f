//! The broker: the set of topics on this node, their lifecycle, and background maintenance.

use crate::config::{apply_config, BrokerConfig, TopicConfig, TopicOverrides, PARTITIONS_MAX};
use crate::error::BrokerError;
use crate::group::store::TOPIC as OFFSETS_TOPIC;
use crate::group::Coordinator;
use crate::partition::Partition;
use crate::producer::ProducerIdAllocator;
use crate::schedule::Schedule;
use crate::topic::{hex, parse_hex, random_uuid, validate_topic_name, Topic, TopicMeta, META_FILE};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use weir_log::unpoisoned::{UnpoisonedMutex, UnpoisonedRwLock};
use weir_log::{read_whole, run_parallel, sync_dirs, write_atomic, Clock, Log, Storage, SYNC_THREADS_MAX};

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
    topics: Arc<RwLock<BTreeMap<String, Arc<Topic>>>>,
    /// Moves on every topic creation and deletion (consumer groups re-resolve their
    /// subscription regexes when it does).
    topics_generation: Arc<std::sync::atomic::AtomicU64>,
    /// Serializes topic creation, deletion and changes (rare; never on the data path).
    admin: Mutex<()>,
    producer_ids: Mutex<ProducerIdAllocator>,
    cluster_id: String,
    /// Set once at open; `None` only while opening.
    groups: Option<Coordinator>,
    /// Partitions with an interval flush or a roll by age pending, by due time.
    schedule: Arc<Schedule>,
}

/// The broker's topic map as the group coordinator sees it.
struct TopicsView {
    topics: Arc<RwLock<BTreeMap<String, Arc<Topic>>>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl crate::group::consumer::TopicDirectory for TopicsView {
    fn lookup(&self, name: &str) -> Option<([u8; 16], i32)> {
        self.topics.read_unpoisoned().get(name).map(|t| (t.id, t.partition_count()))
    }

    fn name_of(&self, id: &[u8; 16]) -> Option<String> {
        self.topics.read_unpoisoned().values().find(|t| &t.id == id).map(|t| t.name.clone())
    }

    fn generation(&self) -> u64 {
        // Read before the names: a topic created in between moves it again, so the next
        // heartbeat resolves once more rather than missing it.
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Names for regex subscriptions: internal topics excluded (a `.*` subscriber wants its
    /// own topics, not the offsets store; Kafka's clients exclude them by default too).
    fn names(&self) -> Vec<String> {
        self.topics.read_unpoisoned().keys().filter(|n| !Broker::is_internal(n)).cloned().collect()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NodeMeta {
    cluster_id: String,
}

impl Broker {
    /// Opens the data directory, recovering every topic's partitions (in parallel: a clean
    /// restart costs no sync, a crash restart one per log with unsynced data, and concurrent
    /// syncs share journal commits).
    pub fn open(config: BrokerConfig, storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Broker, BrokerError> {
        let started = std::time::Instant::now();
        let topics_dir = config.data_dir.join("topics");
        storage.create_dir_all(&topics_dir).map_err(|e| BrokerError::io(&topics_dir, e))?;
        // Interrupted deletions and creations: a topic is either wholly under topics/ or
        // not a topic at all.
        for leftover in [config.data_dir.join(DELETING_DIR), config.data_dir.join(CREATING_DIR)] {
            if storage.exists(&leftover) {
                let names = storage.list(&leftover).map_err(|e| BrokerError::io(&leftover, e))?;
                if !names.is_empty() {
                    tracing::warn!(dir = %leftover.display(), ?names, "removing what an interrupted topic creation or deletion left");
                }
                storage.remove_dir_all(&leftover).map_err(|e| BrokerError::io(&leftover, e))?;
            }
        }
        let cluster_id = load_or_create_cluster_id(&*storage, &config.data_dir)?;
        let producer_ids = ProducerIdAllocator::open(&*storage, config.data_dir.join("producer_ids"))?;
        let mut plans = Vec::new();
        for name in storage.list(&topics_dir).map_err(|e| BrokerError::io(&topics_dir, e))? {
            let dir = topics_dir.join(&name);
            if validate_topic_name(&name).is_err() || !storage.exists(&dir.join(META_FILE)) {
                tracing::warn!(dir = %dir.display(), "ignoring directory that is not a topic");
                continue;
            }
            let plan = TopicPlan::read(&config, &*storage, name, dir)?;
            plan.remove_ungrown_partitions(&*storage)?;
            plans.push(plan);
        }
        let schedule = Arc::new(Schedule::default());
        let topics: BTreeMap<String, Arc<Topic>> = open_topics(plans, &storage, &clock, &schedule)?
            .into_iter()
            .map(|t| (t.name.clone(), Arc::new(t)))
            .collect();
        let partitions: usize = topics.values().map(|t| t.partition_count() as usize).sum();
        tracing::info!(
            topics = topics.len(), partitions, dir = %config.data_dir.display(),
            elapsed_ms = started.elapsed().as_millis() as u64, "broker opened"
        );
        let group_config = config.group;
        let mut broker = Broker {
            config,
            storage,
            clock,
            topics: Arc::new(RwLock::new(topics)),
            topics_generation: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            admin: Mutex::new(()),
            producer_ids: Mutex::new(producer_ids),
            cluster_id,
            groups: None,
            schedule,
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
        let groups = Coordinator::open(group_config, broker.clock.clone(), partition)?;
        groups.set_topic_directory(Arc::new(TopicsView {
            topics: broker.topics.clone(),
            generation: broker.topics_generation.clone(),
        }));
        broker.groups = Some(groups);
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

    /// Size and free space of the filesystem holding the data directory (DescribeLogDirs);
    /// None when the storage cannot tell or the call fails (logged).
    pub fn disk_space(&self) -> Option<weir_log::DiskSpace> {
        match self.storage.disk_space(&self.config.data_dir) {
            Ok(space) => space,
            Err(e) => {
                tracing::warn!(dir = %self.config.data_dir.display(), error = %e, "statvfs failed");
                None
            }
        }
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read_unpoisoned().get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<Arc<Topic>> {
        self.topics.read_unpoisoned().values().find(|t| &t.id == id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read_unpoisoned().values().cloned().collect()
    }

    /// KIP-848 ConsumerGroupHeartbeat against this broker's topics (names, partition counts,
    /// and every topic name for regex subscriptions).
    pub fn consumer_heartbeat(
        &self,
        req: crate::group::consumer::HeartbeatRequest,
    ) -> Result<crate::group::consumer::HeartbeatResponse, crate::group::GroupError> {
        self.groups().consumer_heartbeat(req)
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
        self.resolve_config(&overrides)?.log.validate()?;
        let _admin = self.admin.lock_unpoisoned();
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
        let topic = self.create_topic_dirs(&req.name, id, dir, meta)?;
        let topic = Arc::new(topic);
        self.topics.write_unpoisoned().insert(req.name.clone(), topic.clone());
        self.topics_generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        tracing::info!(topic = %req.name, partitions, "created topic");
        Ok(topic)
    }

    /// All or nothing: the topic is laid out in `creating/<name>-<id>` (partition
    /// directories and empty segments, no sync each), made durable with one group of
    /// directory syncs, renamed into `topics/` and opened there. If anything fails (a full
    /// disk, out of file descriptors) what was made is removed again; a crash leaves either
    /// the complete topic or a staging directory that startup removes.
    fn create_topic_dirs(&self, name: &str, id: [u8; 16], dir: PathBuf, meta: TopicMeta) -> Result<Topic, BrokerError> {
        let staging_root = self.config.data_dir.join(CREATING_DIR);
        let staging = staging_root.join(format!("{name}-{}", hex(&id)));
        let laid_out = self.lay_out(&staging, &meta);
        if let Err(e) = laid_out {
            tracing::warn!(topic = name, error = %e, "topic creation failed; removing what was made");
            self.remove_quietly(&staging);
            return Err(e);
        }
        self.storage.rename(&staging, &dir).map_err(|e| {
            self.remove_quietly(&staging);
            BrokerError::io(&staging, e)
        })?;
        let plan = TopicPlan {
            name: name.to_owned(),
            id,
            config: meta.configs.resolve(&self.config.log)?,
            dir: dir.clone(),
            meta,
        };
        match open_topics(vec![plan], &self.storage, &self.clock, &self.schedule) {
            Ok(mut opened) => opened.pop().ok_or(BrokerError::InvalidRequest("topic vanished while opening")),
            Err(e) => {
                tracing::warn!(topic = name, error = %e, "opening a new topic failed; removing it");
                // Opened partitions close with their handles; the files go aside first so
                // a crash during removal leaves no half topic under topics/.
                let trash = self.config.data_dir.join(DELETING_DIR);
                let target = trash.join(format!("{name}-{}", hex(&id)));
                let moved = self.storage.create_dir_all(&trash).and_then(|()| self.storage.rename(&dir, &target));
                match moved {
                    Ok(()) => self.remove_quietly(&target),
                    Err(err) => {
                        tracing::error!(topic = name, error = %err, "could not roll back a failed topic creation")
                    }
                }
                Err(e)
            }
        }
    }

    fn lay_out(&self, staging: &std::path::Path, meta: &TopicMeta) -> Result<(), BrokerError> {
        self.storage.create_dir_all(staging).map_err(|e| BrokerError::io(staging, e))?;
        let mut dirs = Vec::with_capacity(meta.partitions.clamp(0, PARTITIONS_MAX) as usize + 1);
        for i in 0..meta.partitions {
            let pdir = Topic::partition_dir(staging, i);
            Log::prepare(&pdir, &*self.storage)?;
            dirs.push(pdir);
        }
        self.write_meta(staging, meta)?;
        dirs.push(staging.to_owned());
        sync_dirs(&*self.storage, &dirs).map_err(|(path, e)| BrokerError::io(path, e))
    }

    fn remove_quietly(&self, dir: &std::path::Path) {
        if self.storage.exists(dir) {
            if let Err(e) = self.storage.remove_dir_all(dir) {
                tracing::error!(dir = %dir.display(), error = %e, "could not remove; startup will");
            }
        }
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
        let _admin = self.admin.lock_unpoisoned();
        let topic = self
            .topics
            .write_unpoisoned()
            .remove(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition { topic: name.to_owned(), partition: -1 })?;
        self.topics_generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        // Move it aside first so a crash mid-delete never leaves a half topic behind.
        let trash = self.config.data_dir.join(DELETING_DIR);
        self.storage.create_dir_all(&trash).map_err(|e| BrokerError::io(&trash, e))?;
        let target = trash.join(format!("{}-{}", topic.name, hex(&topic.id)));
        self.storage.rename(&topic.dir, &target).map_err(|e| BrokerError::io(&topic.dir, e))?;
        self.storage.remove_dir_all(&target).map_err(|e| BrokerError::io(&target, e))?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), BrokerError> {
        let _admin = self.admin.lock_unpoisoned();
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
        // New partitions are laid out and synced as a group, recorded in topic.json, then
        // opened; on failure their directories go again (a crash before topic.json is
        // written leaves directories past the count, which startup removes).
        let dirs: Vec<PathBuf> = (current..count).map(|i| Topic::partition_dir(&topic.dir, i)).collect();
        let remove_added = || {
            for d in &dirs {
                self.remove_quietly(d);
            }
        };
        let laid_out =
            dirs.iter().try_for_each(|d| Log::prepare(d, &*self.storage).map_err(BrokerError::from)).and_then(|()| {
                let mut sync = dirs.clone();
                sync.push(topic.dir.clone());
                sync_dirs(&*self.storage, &sync).map_err(|(path, e)| BrokerError::io(path, e))
            });
        if let Err(e) = laid_out {
            remove_added();
            return Err(e);
        }
        let mut added: Vec<Option<Arc<Partition>>> = (current..count).map(|_| None).collect();
        let opened = open_partitions(&dirs, current, config, &self.storage, &self.clock, &self.schedule, &mut added);
        if let Err(e) = opened {
            drop(added);
            remove_added();
            return Err(e);
        }
        let mut meta = topic.meta();
        meta.partitions = count;
        if let Err(e) = self.write_meta(&topic.dir, &meta) {
            drop(added);
            remove_added();
            return Err(e);
        }
        topic.partitions.write_unpoisoned().extend(added.into_iter().flatten());
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
        let _admin = self.admin.lock_unpoisoned();
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
                            reason: "unknown topic config".to_owned(),
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
        let now = self.clock.now_ms();
        for p in topic.partitions() {
            p.log.set_config(config.log)?;
            p.set_policy(config.produce);
            p.schedule_check(now);
        }
        *topic.overrides.write_unpoisoned() = overrides;
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
        let id = self.producer_ids.lock_unpoisoned().allocate(&*self.storage)?;
        Ok((id, 0))
    }

    /// Every partition of every topic.
    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics().iter().flat_map(|t| t.partitions()).collect()
    }

    /// Runs `f` on `parts` with syncs grouped: in parallel (errors are logged per
    /// partition); the first error is returned.
    fn for_each_synced(
        parts: &[Arc<Partition>],
        what: &'static str,
        f: impl Fn(&Partition) -> Result<(), weir_log::LogError> + Sync,
    ) -> Result<(), BrokerError> {
        let first_error = Mutex::new(None);
        let _ = run_parallel(parts.len(), SYNC_THREADS_MAX, |i| {
            let p = &parts[i];
            if let Err(e) = f(p) {
                tracing::error!(dir = %p.log.dir().display(), error = %e, "{what} failed");
                first_error.lock_unpoisoned().get_or_insert(BrokerError::from(e));
            }
            Ok::<(), ()>(())
        });
        first_error.into_inner().unwrap_or_else(|e| e.into_inner()).map_or(Ok(()), Err)
    }

    /// Interval-policy flushes and age-based rolls (called every second): only the
    /// partitions the schedule says are due, flushed together.
    pub fn flush_due(&self) {
        let due = self.schedule.take_due(self.clock.now_ms());
        let _ = Self::for_each_synced(&due, "flush", |p| p.log.flush_if_due());
        for p in &due {
            p.reschedule();
        }
    }

    /// Partitions waiting in the flush schedule (entries, possibly stale).
    pub fn scheduled_partitions(&self) -> usize {
        self.schedule.len()
    }

    /// Retention, compaction and checkpoints for every partition. Called periodically from
    /// a blocking thread; errors are logged per partition. Only partitions whose checkpoint
    /// changed write one, and those write theirs together.
    pub fn run_maintenance(&self) {
        let all = self.all_partitions();
        for p in &all {
            let log = &p.log;
            let result = log.enforce_retention().map(|_| ()).and_then(|()| log.compact().map(|_| ()));
            if let Err(e) = result {
                tracing::error!(dir = %log.dir().display(), error = %e, "maintenance failed");
            }
        }
        let due: Vec<_> = all.into_iter().filter(|p| p.log.checkpoint_due()).collect();
        let _ = Self::for_each_synced(&due, "checkpoint", |p| p.log.write_checkpoint());
    }

    /// Syncs every log and writes checkpoints (graceful shutdown); idle logs cost nothing,
    /// the others sync together.
    pub fn close(&self) -> Result<(), BrokerError> {
        let started = std::time::Instant::now();
        let all = self.all_partitions();
        let result = Self::for_each_synced(&all, "close", |p| p.log.close());
        tracing::info!(partitions = all.len(), elapsed_ms = started.elapsed().as_millis() as u64, "logs closed");
        result
    }
}

/// Staging area of topic creation (`creating/<name>-<id>`) and of deletion
/// (`deleting/<name>-<id>`); startup removes both.
const CREATING_DIR: &str = "creating";
const DELETING_DIR: &str = "deleting";

/// A topic read from its topic.json, before its partitions are opened.
struct TopicPlan {
    name: String,
    id: [u8; 16],
    dir: PathBuf,
    meta: TopicMeta,
    config: TopicConfig,
}

impl TopicPlan {
    fn read(config: &BrokerConfig, storage: &dyn Storage, name: String, dir: PathBuf) -> Result<Self, BrokerError> {
        let meta_path = dir.join(META_FILE);
        let bytes = read_whole(storage, &meta_path).map_err(|e| BrokerError::io(&meta_path, e))?;
        let meta: TopicMeta = serde_json::from_slice(&bytes)
            .map_err(|e| BrokerError::Metadata { path: meta_path.clone(), reason: e.to_string() })?;
        let id = parse_hex(&meta.id)
            .ok_or_else(|| BrokerError::Metadata { path: meta_path.clone(), reason: "bad topic id".into() })?;
        if !(0..=PARTITIONS_MAX).contains(&meta.partitions) {
            return Err(BrokerError::Metadata { path: meta_path, reason: format!("{} partitions", meta.partitions) });
        }
        let config = meta.configs.resolve(&config.log)?;
        Ok(Self { name, id, dir, meta, config })
    }

    /// Partition directories past the recorded count are what an interrupted partition
    /// growth left (never acknowledged): remove them.
    fn remove_ungrown_partitions(&self, storage: &dyn Storage) -> Result<(), BrokerError> {
        for entry in storage.list(&self.dir).map_err(|e| BrokerError::io(&self.dir, e))? {
            if entry.parse::<i32>().is_ok_and(|i| i >= self.meta.partitions)
                && entry.bytes().all(|b| b.is_ascii_digit())
            {
                let p = self.dir.join(&entry);
                tracing::warn!(dir = %p.display(), "removing a partition an interrupted growth left");
                storage.remove_dir_all(&p).map_err(|e| BrokerError::io(&p, e))?;
            }
        }
        Ok(())
    }
}

/// Opens the partitions of all `plans` together (one pool of threads for all of them).
fn open_topics(
    plans: Vec<TopicPlan>,
    storage: &Arc<dyn Storage>,
    clock: &Arc<dyn Clock>,
    schedule: &Arc<Schedule>,
) -> Result<Vec<Topic>, BrokerError> {
    let jobs: Vec<(usize, i32)> =
        plans.iter().enumerate().flat_map(|(t, plan)| (0..plan.meta.partitions).map(move |i| (t, i))).collect();
    let slots: Vec<std::sync::OnceLock<Arc<Partition>>> = jobs.iter().map(|_| std::sync::OnceLock::new()).collect();
    run_parallel(jobs.len(), SYNC_THREADS_MAX, |j| {
        let (t, i) = jobs[j];
        let plan = &plans[t];
        let pdir = Topic::partition_dir(&plan.dir, i);
        let p = Partition::open(pdir, i, plan.config.log, storage.clone(), clock.clone(), schedule.clone())?;
        p.set_policy(plan.config.produce);
        let _ = slots[j].set(p);
        Ok::<(), BrokerError>(())
    })?;
    let mut slots = slots.into_iter().map(|s| s.into_inner());
    let mut topics = Vec::with_capacity(plans.len());
    for plan in plans {
        let partitions: Vec<Arc<Partition>> = slots.by_ref().take(plan.meta.partitions as usize).flatten().collect();
        topics.push(Topic {
            name: plan.name,
            id: plan.id,
            dir: plan.dir,
            overrides: RwLock::new(plan.meta.configs),
            partitions: RwLock::new(partitions),
        });
    }
    Ok(topics)
}

/// Opens partitions `first..` from `dirs` into `out` in parallel.
fn open_partitions(
    dirs: &[PathBuf],
    first: i32,
    config: TopicConfig,
    storage: &Arc<dyn Storage>,
    clock: &Arc<dyn Clock>,
    schedule: &Arc<Schedule>,
    out: &mut [Option<Arc<Partition>>],
) -> Result<(), BrokerError> {
    let slots: Vec<std::sync::OnceLock<Arc<Partition>>> = dirs.iter().map(|_| std::sync::OnceLock::new()).collect();
    run_parallel(dirs.len(), SYNC_THREADS_MAX, |j| {
        let p = Partition::open(
            dirs[j].clone(),
            first + j as i32,
            config.log,
            storage.clone(),
            clock.clone(),
            schedule.clone(),
        )?;
        p.set_policy(config.produce);
        let _ = slots[j].set(p);
        Ok::<(), BrokerError>(())
    })?;
    for (o, s) in out.iter_mut().zip(slots) {
        *o = s.into_inner();
    }
    Ok(())
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
