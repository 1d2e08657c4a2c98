//! fsync mode, for a binding that coalesces the fdatasyncs of several emitted lines (one
//! fdatasync of a part covers every line whose write() returned before it started).

use super::{Error, Result, SyncTicket};
use std::sync::Arc;

impl SyncTicket {
    /// Whether two tickets are for the same part (one fdatasync serves both).
    pub fn same_part(&self, other: &SyncTicket) -> bool {
        Arc::ptr_eq(&self.part, &other.part)
    }

    /// `sync()`, refused with EIO and no fdatasync when the part was abandoned already (an
    /// earlier fdatasync of it failed): bytes written before that failure may be lost whatever
    /// a later fdatasync reports, so no line of the part is reported durable after it.
    pub fn sync_unless_abandoned(&self) -> Result<()> {
        if self.part.is_abandoned() {
            return Err(Error::io(
                &self.part.path,
                std::io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        self.sync()
    }

    /// Tests only (the `test-hooks` feature): abandon this ticket's part as a failed fdatasync of
    /// another thread would, between this line's write and its own sync.
    #[cfg(feature = "test-hooks")]
    pub fn abandon_part_for_test(&self) {
        self.part
            .abandon("test hook: another thread's fdatasync failed");
    }
}
