use std::time::Duration;

/// First wait before a member whose share may have been committed asks what became of its DKG
/// or reshare again; doubled after every unanswered question, up to [`MAX_STATUS_RETRY`].
pub const STATUS_RETRY: Duration = Duration::from_secs(5);

/// Longest wait between two questions about an outcome.
pub const MAX_STATUS_RETRY: Duration = Duration::from_secs(300);

/// A point in time in milliseconds since an epoch of the driver's choosing. The protocol never
/// reads a clock: the driver passes `now` in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// `self + d`, saturating.
    pub fn after(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}
