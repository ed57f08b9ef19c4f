//! Window shapes: which windows an event time belongs to.

/// A window shape. Times in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling { size_ms: i64 },
    /// Windows of `size` starting every `slide` (hopping); an event is in size/slide windows.
    Sliding { size_ms: i64, slide_ms: i64 },
    /// Per key: events closer than `gap` belong to one session.
    Session { gap_ms: i64 },
}

impl Window {
    /// The [start, end) of every fixed window containing `t` (empty for sessions, which
    /// are assigned by merging).
    pub fn assign(&self, t: i64) -> Vec<(i64, i64)> {
        match *self {
            Window::Tumbling { size_ms } => {
                let start = t.div_euclid(size_ms) * size_ms;
                vec![(start, start + size_ms)]
            }
            Window::Sliding { size_ms, slide_ms } => {
                let last_start = t.div_euclid(slide_ms) * slide_ms;
                let mut out = Vec::new();
                let mut start = last_start;
                while start > t - size_ms {
                    out.push((start, start + size_ms));
                    start -= slide_ms;
                }
                out.reverse();
                out
            }
            Window::Session { .. } => Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), &'static str> {
        match *self {
            Window::Tumbling { size_ms } if size_ms <= 0 => Err("window size must be positive"),
            Window::Sliding { size_ms, slide_ms } if size_ms <= 0 || slide_ms <= 0 => {
                Err("size and slide must be positive")
            }
            Window::Sliding { size_ms, slide_ms } if slide_ms > size_ms => Err("slide must not exceed size"),
            Window::Session { gap_ms } if gap_ms <= 0 => Err("session gap must be positive"),
            _ => Ok(()),
        }
    }
}
