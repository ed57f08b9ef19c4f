//! Aggregations over one numeric field (or the events themselves, for count).

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    CountDistinct,
    /// A user-defined aggregate in Rust (`PipelineBuilder::window_with`).
    Custom,
}

/// A user-defined aggregate. Its state is a JSON value, so checkpoints can hold it; `merge`
/// combines two states when session windows merge.
pub trait UserAggregate: Send + Sync {
    fn init(&self) -> serde_json::Value;
    fn add(&self, state: &mut serde_json::Value, event: &crate::Event);
    fn merge(&self, into: &mut serde_json::Value, other: serde_json::Value);
    /// The window's result.
    fn result(&self, state: &serde_json::Value) -> f64;
}

impl Aggregate {
    /// Whether the aggregate reads a field of the event.
    pub fn needs_field(self) -> bool {
        !matches!(self, Aggregate::Count | Aggregate::Custom)
    }
}

/// Running state of one aggregate for one window and key.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Accumulator {
    pub count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    /// For count-distinct: the distinct values' JSON text.
    distinct: BTreeSet<String>,
    /// For a user-defined aggregate: its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) custom: Option<serde_json::Value>,
}

impl Accumulator {
    pub fn add(&mut self, x: f64, raw: &str, kind: Aggregate) {
        self.count += 1;
        self.sum += x;
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        if kind == Aggregate::CountDistinct && !self.distinct.contains(raw) {
            self.distinct.insert(raw.to_owned());
        }
    }

    pub fn merge(&mut self, mut other: Accumulator) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        // Into the larger set: merging into an empty accumulator moves, not copies.
        if other.distinct.len() > self.distinct.len() {
            std::mem::swap(&mut self.distinct, &mut other.distinct);
        }
        self.distinct.extend(other.distinct);
    }

    pub fn result(&self, kind: Aggregate) -> f64 {
        match kind {
            Aggregate::Count => self.count as f64,
            Aggregate::Sum => self.sum,
            Aggregate::Min => self.min.unwrap_or(f64::NAN),
            Aggregate::Max => self.max.unwrap_or(f64::NAN),
            Aggregate::Avg => {
                if self.count == 0 {
                    f64::NAN
                } else {
                    self.sum / self.count as f64
                }
            }
            Aggregate::CountDistinct => self.distinct.len() as f64,
            // Computed by the operator, which holds the implementation.
            Aggregate::Custom => f64::NAN,
        }
    }
}
