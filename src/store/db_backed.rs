//! `db_backed` compatibility: reflector.go tracks a store's contents (and, with `has_cap`, its
//! size cap) in MySQL. prism-lite's disk store keeps its own index and LRU, so the database adds
//! nothing: an operator's existing file loads as the inner `store`, with `max_size` applied to
//! the inner disk's capacity, and one warning at start-up names what is ignored.
//!
//! Note: reflector.go parses `max_size` with binary units (`500GB` = 500 GiB) and compares it
//! with a blob *count*; we treat it as bytes with our usual units (`500GB` = 500 * 10^9).

use crate::config::{DbBackedConfig, StoreConfig};

/// The store a `db_backed` stanza becomes, and what was ignored on the way.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub store: StoreConfig,
    /// Human-readable items for the warning, e.g. "MySQL connection settings (user, host)".
    pub ignored: Vec<String>,
}

/// Works out the effective inner store.
pub fn resolve(config: &DbBackedConfig) -> Resolved {
    let mut ignored = Vec::new();
    let mysql: Vec<&str> = [
        ("user", config.user.is_some()),
        ("password", config.password.is_some()),
        ("database", config.database.is_some()),
        ("host", config.host.is_some()),
        ("port", config.port.is_some()),
        ("log_queries", config.log_queries.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if !mysql.is_empty() {
        ignored.push(format!(
            "MySQL connection settings ({}): no database is used",
            mysql.join(", ")
        ));
    }
    if config.access_tracking.is_some() {
        ignored.push("access_tracking: the disk store tracks access itself (LRU)".into());
    }
    if config.soft_deletes.is_some() {
        ignored.push("soft_deletes: evicted blobs are deleted".into());
    }
    if config.delete_on_miss.is_some() {
        ignored.push("delete_on_miss: the disk index always matches the files".into());
    }

    let mut store = config.store.clone();
    match (config.max_size, config.has_cap) {
        (Some(size), Some(false)) => ignored.push(format!(
            "max_size {size}: has_cap is false (as in reflector.go)"
        )),
        (Some(size), _) => match &mut store {
            StoreConfig::Disk(disk) if disk.max_size.is_none() => disk.max_size = Some(size),
            StoreConfig::Disk(disk) => ignored.push(format!(
                "max_size {size}: the inner disk sets its own max_size ({})",
                disk.max_size.map(|s| s.to_string()).unwrap_or_default()
            )),
            other => ignored.push(format!(
                "max_size {size}: the inner store ({}) is not a disk; used as is",
                other.summary()
            )),
        },
        (None, _) => {}
    }
    Resolved { store, ignored }
}

/// Logs the one start-up warning for a `db_backed` stanza.
pub fn warn(resolved: &Resolved) {
    if resolved.ignored.is_empty() {
        tracing::warn!("db_backed: loaded as its inner store (prism-lite needs no database)");
    } else {
        tracing::warn!(
            "db_backed: loaded as its inner store (prism-lite needs no database); ignored: {}",
            resolved.ignored.join("; ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, BlobcacheConfig, ByteSize};

    fn db(text: &str) -> DbBackedConfig {
        let cfg: BlobcacheConfig = parse(text, "t.yaml").unwrap();
        match cfg.store {
            StoreConfig::DbBacked(c) => *c,
            other => panic!("expected db_backed, got {}", other.summary()),
        }
    }

    #[test]
    fn max_size_goes_to_the_disk_and_mysql_is_named() {
        let r = resolve(&db("store:\n  db_backed:\n    user: u\n    password: 1234\n    host: h\n    port: 3306\n    access_tracking: 1\n    soft_deletes: true\n    has_cap: true\n    max_size: 5MB\n    store:\n      disk: {mount_point: /tmp/x}\n"));
        let StoreConfig::Disk(d) = &r.store else {
            panic!()
        };
        assert_eq!(d.max_size, Some(ByteSize(5_000_000)));
        let all = r.ignored.join("; ");
        assert!(
            all.contains("MySQL connection settings (user, password, host, port)"),
            "{all}"
        );
        assert!(
            all.contains("access_tracking") && all.contains("soft_deletes"),
            "{all}"
        );
    }

    #[test]
    fn has_cap_false_and_non_disk_are_reported() {
        let r = resolve(&db(
            "store: {db_backed: {has_cap: false, max_size: 5MB, store: {disk: {mount_point: /x}}}}",
        ));
        let StoreConfig::Disk(d) = &r.store else {
            panic!()
        };
        assert_eq!(d.max_size, None);
        assert!(r.ignored.join(";").contains("has_cap is false"));
        let r = resolve(&db("store: {db_backed: {max_size: 5MB, store: {mem: {}}}}"));
        assert!(matches!(r.store, StoreConfig::Mem(_)));
        assert!(r.ignored.join(";").contains("not a disk"));
    }
}
