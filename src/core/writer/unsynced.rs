//! os mode's parts left unsynced at a switch: flush() fdatasyncs them (through descriptors of
//! their own, which hold no lock, so another writer may adopt such a part meanwhile).

use super::*;

/// os mode: keep a lock-free descriptor of a part left at a switch, for the next flush();
/// when more than `MAX_UNSYNCED_PARTS` wait, the oldest is fdatasynced now.
pub(super) fn remember_unsynced(list: &mut Vec<(PathBuf, File)>, p: &Part) -> Result<()> {
    if list.iter().any(|(path, _)| *path == p.path) {
        return Ok(());
    }
    match File::open(&p.path) {
        Ok(f) => list.push((p.path.clone(), f)),
        Err(_) => return p.datasync(), // cannot reopen it: sync it now through its own fd
    }
    if list.len() > MAX_UNSYNCED_PARTS {
        let (path, f) = list.remove(0);
        f.sync_data().map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// fdatasync the parts left since the last flush, then the current one; every one is tried,
/// the first failure is returned.
pub(super) fn sync_all(left: &[(PathBuf, File)], current: Option<&Part>) -> Result<()> {
    let mut first_error = None;
    for (path, f) in left {
        if let Err(e) = f.sync_data() {
            first_error.get_or_insert(Error::io(path, e));
        }
    }
    if let Some(Err(e)) = current.map(|p| p.datasync()) {
        first_error.get_or_insert(e);
    }
    first_error.map_or(Ok(()), Err)
}
