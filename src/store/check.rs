//! `check-config`'s look at the store tree: every check that building the tree runs, without
//! the side effects of building it (no directory created, no index rebuilt, no connection).
//!
//! Leaves other than `disk` are simply built and dropped: their constructors are where the
//! checks live (URL schemes, S3 key pairs, TLS files, addresses), and building one opens
//! nothing (remote clients connect on first use). So a check added to a constructor is a
//! check `check-config` runs, with no second list to keep in step. A `disk` is only looked at:
//! opening one rebuilds its index, which can take minutes on a large cache.

use std::sync::Arc;

use anyhow::Context;

use crate::config::StoreConfig;
use crate::metrics::Metrics;
use crate::store::{build, db_backed, BuildContext};

/// Checks the tree; returns notes worth telling the operator (e.g. a `mount_point` that start-up
/// will create), or the first error, named by its place in the tree.
pub fn check(config: &StoreConfig) -> anyhow::Result<Vec<String>> {
    let ctx = BuildContext {
        metrics: Arc::new(Metrics::new()),
    };
    let mut notes = Vec::new();
    check_into(config, &ctx, &mut notes)?;
    Ok(notes)
}

fn check_into(
    config: &StoreConfig,
    ctx: &BuildContext,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    match config {
        StoreConfig::Disk(c) => {
            let path = &c.mount_point;
            if !path.exists() {
                notes.push(format!(
                    "disk mount_point {} does not exist; it will be created at start",
                    path.display()
                ));
            } else if !path.is_dir() {
                anyhow::bail!("disk mount_point {} is not a directory", path.display());
            }
            Ok(())
        }
        StoreConfig::DbBacked(c) => {
            check_into(&db_backed::resolve(c).store, ctx, notes).context("in db_backed.store")
        }
        leaf if leaf.children().is_empty() => build(leaf, ctx).map(drop),
        composite => {
            let kind = composite.summary();
            let kind = kind.split(' ').next().unwrap_or_default();
            for (role, child) in composite.children() {
                check_into(child, ctx, notes).with_context(|| format!("in {kind}.{role}"))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> StoreConfig {
        let cfg: crate::config::BlobcacheConfig = crate::config::parse(yaml, "t").unwrap();
        cfg.store
    }

    #[test]
    fn remote_leaves_are_checked_and_disks_only_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not-yet");
        let store = parse(&format!(
            "store: {{caching: {{cache: {{disk: {{mount_point: {}}}}}, origin: {{http: {{endpoint: 'https://cdn.example/b/?sig=SECRET'}}}}}}}}",
            missing.display()
        ));
        let notes = check(&store).unwrap();
        assert!(notes[0].contains("will be created"), "{notes:?}");
        assert!(!missing.exists(), "check-config must not create anything");

        let bad = parse(
            "store: {caching: {cache: {mem: {}}, origin: {http: {endpoint: 'ftp://u:SECRET@cdn/'}}}}",
        );
        let e = format!("{:#}", check(&bad).unwrap_err());
        assert!(
            e.contains("in caching.origin") && e.contains("use http or https"),
            "{e}"
        );
        assert!(!e.contains("SECRET"), "{e}");
    }
}
