//! Drops events whose key was already seen within a time horizon (event time).

use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
pub(crate) struct Dedup {
    horizon_ms: i64,
    /// key -> event time it was first seen; and the reverse index for expiry.
    seen: HashMap<String, i64>,
    by_time: BTreeMap<(i64, String), ()>,
    max_keys: usize,
}

impl Dedup {
    pub fn new(horizon_ms: i64, max_keys: usize) -> Self {
        Self { horizon_ms, seen: HashMap::new(), by_time: BTreeMap::new(), max_keys }
    }

    /// True when the event is new (keep it); false for a duplicate within the horizon.
    pub fn admit(&mut self, key: &str, t: i64) -> Result<bool, crate::StreamError> {
        if let Some(&first) = self.seen.get(key) {
            if (t - first).abs() < self.horizon_ms {
                return Ok(false);
            }
            self.by_time.remove(&(first, key.to_owned()));
        }
        if self.seen.len() >= self.max_keys {
            return Err(crate::StreamError::StateTooLarge { open_windows: self.seen.len(), max: self.max_keys });
        }
        self.seen.insert(key.to_owned(), t);
        self.by_time.insert((t, key.to_owned()), ());
        Ok(true)
    }

    pub fn export(&self) -> Vec<(String, i64)> {
        self.seen.iter().map(|(k, t)| (k.clone(), *t)).collect()
    }

    pub fn import(&mut self, keys: Vec<(String, i64)>) {
        self.seen.clear();
        self.by_time.clear();
        for (k, t) in keys {
            self.by_time.insert((t, k.clone()), ());
            self.seen.insert(k, t);
        }
    }

    /// Forgets keys older than the horizon behind the watermark.
    pub fn expire(&mut self, watermark_ms: i64) {
        let cutoff = watermark_ms.saturating_sub(self.horizon_ms);
        while let Some((&(t, ref k), _)) = self.by_time.first_key_value() {
            if t >= cutoff {
                break;
            }
            let k = k.clone();
            self.by_time.pop_first();
            self.seen.remove(&k);
        }
    }
}
