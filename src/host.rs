//! What this process may use of the machine. Owns the core count and nothing else.

/// The cores this process may use, asked once: `available_parallelism` reads cgroup files on
/// every call, too slow for a write path that asks per batch.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
