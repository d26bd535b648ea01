//! `prism-lite upload PATH`: reflector.go's uploader as an operator runs it, a real process
//! loading the seed README's `upload.yaml` (a `proxied-s3` whose writer is `db_backed -> s3`)
//! against a real S3 server, over an lbrynet-shaped `blobfiles/` folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use prism_lite::blob::{BlobHash, MAX_BLOB_SIZE};

use crate::common::{
    blob, create_bucket, free_port, put_object, sdk_client, S3Server, ACCESS_KEY, BUCKET,
    SECRET_KEY,
};

const README_UPLOAD_YAML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/examples/reflector-go-db-backed/upload.yaml"
);

/// Writes the README's `upload.yaml` into `conf`, pointed at `endpoint` with the test keys.
fn write_upload_yaml(conf: &Path, endpoint: &str) {
    let text = std::fs::read_to_string(README_UPLOAD_YAML)
        .unwrap()
        .replace("https://s3.yourendpoint.tv", endpoint)
        .replace("YOUR_KEY", ACCESS_KEY)
        .replace("YOUR_SECRET", SECRET_KEY)
        .replace("blobs-bucket", BUCKET);
    std::fs::create_dir_all(conf).unwrap();
    std::fs::write(conf.join("upload.yaml"), text).unwrap();
}

/// `prism-lite --conf-dir CONF upload ARGS...` to completion: (exit code, stdout, stderr).
/// Blocking, so it runs off the async workers that serve the in-process S3 server.
async fn upload(conf: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prism-lite"));
    command.arg("--conf-dir").arg(conf).arg("upload").args(args);
    let out = tokio::task::spawn_blocking(move || command.output().expect("run upload"))
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// An lbrynet `blobfiles/` folder: three good blobs, one the bucket already has, a stray file,
/// a half-written blob (its name, other bytes), an oversized file named by its own hash, and
/// a sub-folder.
struct Folder {
    dir: PathBuf,
    good: Vec<(BlobHash, Bytes)>,
    present: (BlobHash, Bytes),
}

fn blobfiles(root: &Path) -> Folder {
    let dir = root.join("blobfiles");
    std::fs::create_dir_all(dir.join("subfolder")).unwrap();
    let write = |name: &str, data: &[u8]| std::fs::write(dir.join(name), data).unwrap();
    let good: Vec<_> = (0..3u64).map(|i| blob(40 + i, 200_000)).collect();
    for (hash, data) in &good {
        write(&hash.to_hex(), data);
    }
    let present = blob(50, 1000);
    write(&present.0.to_hex(), &present.1);
    write("lbrynet.sqlite-journal", b"stray");
    let (wrong_name, _) = blob(51, 5000);
    write(&wrong_name.to_hex(), &blob(52, 5000).1);
    let big = vec![9u8; MAX_BLOB_SIZE + 1];
    write(&BlobHash::of(&big).to_hex(), &big);
    Folder { dir, good, present }
}

fn in_bucket(s3_root: &Path, hash: &BlobHash) -> Option<Vec<u8>> {
    std::fs::read(s3_root.join(BUCKET).join(hash.to_hex())).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_upload_yaml_uploads_a_blobfiles_folder_with_every_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let s3_root = tmp.path().join("s3");
    std::fs::create_dir_all(&s3_root).unwrap();
    let s3 = S3Server::start(&s3_root, 0).await;
    let sdk = sdk_client(&s3.endpoint());
    create_bucket(&sdk).await;
    let conf = tmp.path().join("conf");
    write_upload_yaml(&conf, &s3.endpoint());
    let folder = blobfiles(tmp.path());
    // The bucket already has this one, with other bytes than the file: an exists check that
    // works leaves them alone.
    put_object(&sdk, &folder.present.0.to_hex(), Bytes::from_static(b"old")).await;
    let path = folder.dir.to_str().unwrap();

    let (code, out, err) = upload(&conf, &[path, "--workers=2", "--deleteBlobsAfterUpload"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(
            "upload summary: files=8 uploaded=3 already_present=1 skipped=4 failed=0 deleted=3"
        ),
        "{out}\n{err}"
    );
    for (hash, data) in &folder.good {
        assert_eq!(in_bucket(&s3_root, hash).as_deref(), Some(&data[..]));
        assert!(
            !folder.dir.join(hash.to_hex()).exists(),
            "uploaded file removed"
        );
    }
    let (present, _) = &folder.present;
    assert_eq!(in_bucket(&s3_root, present).as_deref(), Some(&b"old"[..]));
    assert!(
        folder.dir.join(present.to_hex()).exists(),
        "a skipped file stays"
    );
    for why in [
        "skipped lbrynet.sqlite-journal: not a blob name",
        "skipped subfolder: not a blob name",
        "wrong bytes",
        "larger than a blob",
    ] {
        assert!(err.contains(why), "{why}: {err}");
    }
    assert!(err.contains("`database:` accepted and ignored"), "{err}");
    assert_eq!(std::fs::read_dir(&folder.dir).unwrap().count(), 5);

    // --skipExistsCheck puts the present one without asking (and without deleting: not asked).
    let (code, out, err) = upload(&conf, &[path, "--skipExistsCheck=true"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("files=5 uploaded=1 already_present=0 skipped=4 failed=0 deleted=0"),
        "{out}\n{err}"
    );
    assert_eq!(
        in_bucket(&s3_root, present).as_deref(),
        Some(&folder.present.1[..])
    );
    assert!(folder.dir.join(present.to_hex()).exists());
    s3.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_puts_exit_non_zero_and_delete_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    // Nothing listens there: every put fails.
    write_upload_yaml(&conf, &format!("http://127.0.0.1:{}", free_port()));
    let folder = blobfiles(tmp.path());
    let path = folder.dir.to_str().unwrap();
    let (code, out, err) = upload(
        &conf,
        &[path, "--skipExistsCheck", "--deleteBlobsAfterUpload=true"],
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("uploaded=0 already_present=0 skipped=4 failed=4 deleted=0"),
        "{out}\n{err}"
    );
    assert!(err.contains("error: 4 puts failed"), "{err}");
    assert_eq!(std::fs::read_dir(&folder.dir).unwrap().count(), 8);

    // Bad flags and paths: one line, exit status non-zero.
    let (code, _, err) = upload(&conf, &[path, "--workers=0"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--workers"), "{err}");
    let (code, _, err) = upload(&conf, &[&tmp.path().join("nope").display().to_string()]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nope"), "{err}");
}
