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
    /// Per key: one window from its first event until the time in each event's `end_field`
    /// (inclusive; the latest one an event of the window gives), e.g. an auction until its
    /// expiry (Nexmark q4).
    Until,
    /// Per key: one window over all time, closed only by the end of a bounded input.
    Global,
}

/// The [start, end) that global windows report.
pub const GLOBAL_WINDOW: (i64, i64) = (0, i64::MAX / 4);

impl Window {
    /// The [start, end) of every fixed window containing `t`, in ascending order, without
    /// allocating (empty for sessions, until and global windows, which are assigned per key).
    pub fn assign(&self, t: i64) -> impl Iterator<Item = (i64, i64)> {
        let (size, slide) = match *self {
            Window::Tumbling { size_ms } => (size_ms, size_ms),
            Window::Sliding { size_ms, slide_ms } => (size_ms, slide_ms),
            Window::Session { .. } | Window::Until | Window::Global => (0, 1),
        };
        let last_start = t.div_euclid(slide) * slide;
        // Starts last_start − k·slide for k = 0.. while start > t − size.
        let n = if size <= 0 { 0 } else { (last_start - t + size + slide - 1).div_euclid(slide) };
        (0..n).rev().map(move |k| {
            let start = last_start - k * slide;
            (start, start + size)
        })
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
