//! The open-file limit: every WebSocket client is a file descriptor, and so is every server
//! socket of a spawned server (which inherits this process's limit).

/// Raises the soft `RLIMIT_NOFILE` to at least `want` (and the hard limit too, when allowed).
/// Returns the soft limit now in force; it may be below `want` when the system refuses more.
pub fn raise(want: u64) -> anyhow::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft >= want {
        return Ok(soft);
    }
    if want > hard && rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_ok() {
        return Ok(want);
    }
    Ok(rlimit::increase_nofile_limit(want)?)
}
