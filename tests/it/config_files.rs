//! Every shipped config file loads, and reflector.go's `db_backed` blobcache file builds without
//! MySQL, applies its `max_size` to the disk, and warns once about what it ignores.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prism_lite::config::{self, BlobcacheConfig, StoreConfig};
use prism_lite::metrics::Metrics;
use prism_lite::store::{self, BuildContext};

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");

/// `config/*.yaml` and `config/examples/*/*.yaml`.
fn shipped_files() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(CONFIG_DIR)];
    if let Ok(entries) = std::fs::read_dir(Path::new(CONFIG_DIR).join("examples")) {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        files.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml")),
        );
    }
    files.sort();
    files
}

#[test]
fn every_shipped_config_file_loads() {
    let files = shipped_files();
    for example in [
        "s3-origin",
        "two-tier-edge",
        "two-tier-regional",
        "reflector-go-db-backed",
        "cluster-edge",
        "cluster-regional",
    ] {
        assert!(
            files
                .iter()
                .any(|f| f.ends_with(format!("{example}/blobcache.yaml"))),
            "config/examples/{example}/blobcache.yaml is missing: {files:?}"
        );
    }
    for file in &files {
        let dir = file.parent().unwrap();
        let command = file.file_stem().unwrap().to_str().unwrap();
        // `upload.yaml` has the upload command's shape; the others are serving files.
        let loaded = if command == "upload" {
            config::load_file::<config::UploadConfig>(dir, command).map(drop)
        } else {
            config::load_file::<BlobcacheConfig>(dir, command).map(drop)
        };
        if let Err(e) = loaded {
            panic!("{} does not load: {e}", file.display());
        }
    }
}

/// Collects tracing output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn reflector_go_db_backed_file_builds_with_disk_capacity_and_one_warning() {
    let text = std::fs::read_to_string(
        Path::new(CONFIG_DIR).join("examples/reflector-go-db-backed/blobcache.yaml"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Point the disk at a temp dir and make the cap small enough to observe.
    let text = text
        .replace("/mnt/blobcache/cache", &dir.path().display().to_string())
        .replace("max_size: 500GB", "max_size: 5MB");
    let cfg: BlobcacheConfig = config::parse(&text, "blobcache.yaml").unwrap();
    let StoreConfig::Caching(caching) = &cfg.store else {
        panic!("root is caching")
    };
    let desc = store::describe(&cfg.store);
    assert!(
        desc.contains("db_backed")
            && desc.contains("disk name=blobcache")
            && desc.contains("max_size=5.0 MB"),
        "{desc}"
    );

    let metrics = Arc::new(Metrics::new());
    let ctx = BuildContext {
        metrics: Arc::clone(&metrics),
    };
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let cache = tracing::subscriber::with_default(subscriber, || {
        store::build(&cfg.store, &ctx).expect("whole tree builds");
        store::build(&caching.cache, &ctx).expect("cache tier builds")
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("db_backed")).collect();
    assert_eq!(warnings.len(), 2, "one warning per build: {log}");
    for w in &warnings {
        assert!(w.contains("WARN"), "{w}");
        assert!(
            w.contains("MySQL connection settings (user, password, database, host, port)"),
            "{w}"
        );
    }

    // The capacity is the db_backed max_size: three 2 MiB blobs do not all fit in 5 MB.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut hashes = Vec::new();
        for seed in 0..3u8 {
            let data = vec![seed; 2 * 1024 * 1024];
            let (hash, data) = prism_lite::blob::named(data);
            cache.put(&hash, data).await.unwrap();
            hashes.push(hash);
        }
        let mut held = 0;
        for h in &hashes {
            if cache.has(h).await.unwrap() {
                held += 1;
            }
        }
        assert_eq!(held, 2, "5 MB holds two 2 MiB blobs");
    });
    let files = walk(dir.path());
    assert_eq!(files, 2, "evicted blob files are deleted");
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                usize::from(p.file_name().unwrap().len() == 96)
            }
        })
        .sum()
}

/// deploy/cluster/docker-compose.yml (MinIO, three regionals, an edge) cannot be run here (no
/// container engine in the test environment); this checks that it parses and that its parts
/// agree with each other and with the example configs it mounts.
#[test]
fn cluster_compose_file_wires_minio_three_regionals_and_an_edge() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cluster");
    let text = std::fs::read_to_string(deploy.join("docker-compose.yml")).unwrap();
    let mut compose: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    compose.apply_merge().unwrap();
    let services = &compose["services"];
    let minio = &services["minio"];
    let user = minio["environment"]["MINIO_ROOT_USER"].as_str().unwrap();
    let mounted = |service: &str, target: &str| -> PathBuf {
        let volumes = services[service]["volumes"].as_sequence().unwrap();
        let spec = volumes
            .iter()
            .filter_map(|v| v.as_str())
            .find(|v| v.contains(&format!(":{target}")))
            .unwrap_or_else(|| panic!("{service} does not mount {target}"));
        let source = spec.split(':').next().unwrap();
        if source.starts_with('.') {
            let path = deploy.join(source);
            assert!(path.is_file(), "{service}: {} is missing", path.display());
            path
        } else {
            assert!(
                compose["volumes"]
                    .as_mapping()
                    .is_some_and(|m| m.contains_key(source)),
                "{service}: volume {source} is not declared"
            );
            PathBuf::from(source)
        }
    };

    let regionals = ["regional-1", "regional-2", "regional-3"];
    let mut regional_config = None;
    for r in regionals {
        let s = &services[r];
        assert_eq!(
            s["build"]["dockerfile"].as_str(),
            Some("deploy/Dockerfile"),
            "{r}"
        );
        assert_eq!(
            s["environment"]["AWS_ACCESS_KEY_ID"].as_str(),
            Some(user),
            "{r}"
        );
        let config = mounted(r, "/etc/prism-lite/blobcache.yaml");
        mounted(r, "/var/cache/prism-lite");
        regional_config.get_or_insert(config);
    }
    let regional_config = regional_config.unwrap();
    let regional: BlobcacheConfig =
        config::load_file(regional_config.parent().unwrap(), "blobcache").unwrap();
    let StoreConfig::Caching(caching) = &regional.store else {
        panic!("regional root should be caching")
    };
    let StoreConfig::S3(s3) = &caching.origin else {
        panic!("regional origin should be s3")
    };
    assert_eq!(
        s3.endpoint.as_ref().map(|e| e.expose()),
        Some("http://minio:9000")
    );
    assert!(
        s3.aws_id.is_none(),
        "the keys come from the compose environment"
    );
    let bucket_setup = services["minio-bucket"]["entrypoint"][2].as_str().unwrap();
    assert!(
        bucket_setup.contains(&format!("local/{}", s3.bucket)),
        "{bucket_setup}"
    );

    let edge_config = mounted("edge", "/etc/prism-lite/blobcache.yaml");
    let edge: BlobcacheConfig =
        config::load_file(edge_config.parent().unwrap(), "blobcache").unwrap();
    let StoreConfig::Caching(caching) = &edge.store else {
        panic!("edge root should be caching")
    };
    let StoreConfig::Upstream(pool) = &caching.origin else {
        panic!("edge origin should be an upstream pool")
    };
    let listed: Vec<&str> = pool.endpoints.iter().map(|e| e.address.as_str()).collect();
    let expected: Vec<String> = regionals
        .iter()
        .map(|r| format!("http://{r}:5569"))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(
        regional.servers.http.as_ref().map(|h| h.port),
        Some(5569),
        "the edge's URLs name the regionals' HTTP port"
    );
}
