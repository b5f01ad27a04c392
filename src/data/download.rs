//! `dfa data download`: fetch a data set from the usual public mirrors, check it, write it
//! atomically.
//!
//! The check is the SHA-256 of each file's *uncompressed* content, so a mirror that re-gzips a
//! file (different `.gz` bytes, same data) still verifies. A file is written to a temporary name
//! in the target folder and renamed only once verified, so a failed or interrupted download
//! never leaves a partial file under the real name.

use super::{DatasetKind, IDX_FILES, idx::maybe_gunzip, sha256_hex};

/// More than any IDX file of a data set this tool downloads holds when inflated (MNIST's
/// training images are 47,040,016 bytes).
const MAX_IDX_BYTES: usize = 64 << 20;
use crate::base::error::{Error, Result};
use crate::base::io::write_atomically;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SHA-256 of the uncompressed IDX files, in the order of [`IDX_FILES`] (IDX data sets only).
pub fn expected_sha256(kind: DatasetKind) -> [&'static str; 4] {
    match kind {
        // The published checksums of the original MNIST files (see ../shared/data/README.md).
        DatasetKind::Mnist => [
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ],
        // Computed from Zalando's files as packaged by Debian (dataset-fashion-mnist).
        DatasetKind::FashionMnist => [
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ],
        _ => panic!("{} is not an IDX data set", kind.name()),
    }
}

/// A CIFAR data set's official archive: its name, the MD5 its authors publish (and every
/// loader pins), and the members we keep.
pub struct Archive {
    pub file: &'static str,
    pub md5: &'static str,
    pub members: &'static [&'static str],
}

/// The archive of a CIFAR data set (`None` for the IDX data sets).
pub fn archive(kind: DatasetKind) -> Option<Archive> {
    match kind {
        DatasetKind::Cifar10 => Some(Archive {
            file: "cifar-10-binary.tar.gz",
            md5: "c32a1d4ab5d03f1284b67883e8d87530",
            members: &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
                "test_batch.bin",
                "batches.meta.txt",
            ],
        }),
        DatasetKind::Cifar100 | DatasetKind::Cifar100Coarse => Some(Archive {
            file: "cifar-100-binary.tar.gz",
            md5: "03b5dce01913d631647c71ecec9e9cb8",
            members: &["train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt"],
        }),
        DatasetKind::Mnist | DatasetKind::FashionMnist | DatasetKind::File | DatasetKind::Arrays => None,
    }
}

/// Public mirrors, tried in order (each holds the four `.gz` files under these names).
pub fn default_mirrors(kind: DatasetKind) -> Vec<String> {
    let m: &[&str] = match kind {
        DatasetKind::Mnist => &[
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        DatasetKind::FashionMnist => &[
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ],
        DatasetKind::Cifar10 | DatasetKind::Cifar100 | DatasetKind::Cifar100Coarse => {
            &["https://www.cs.toronto.edu/~kriz/", "https://cave.cs.toronto.edu/kriz/"]
        }
        DatasetKind::File | DatasetKind::Arrays => &[],
    };
    m.iter().map(|s| s.to_string()).collect()
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Already present with the right content.
    Present(PathBuf),
    /// Downloaded from this URL.
    Downloaded(PathBuf, String),
}

fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>> {
    let fail = |message: String| Error::Download { url: url.to_string(), message };
    let response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    response.into_body().into_with_config().limit(512 * 1024 * 1024).read_to_vec().map_err(|e| fail(e.to_string()))
}

fn verify(bytes: Vec<u8>, what: &str, expected: &str) -> Result<()> {
    // the largest IDX file of MNIST/Fashion-MNIST is 47 MB uncompressed
    let raw = maybe_gunzip(bytes, Path::new(what), MAX_IDX_BYTES)?;
    let actual = sha256_hex(&raw);
    if actual != expected {
        return Err(Error::Checksum { what: what.to_string(), expected: expected.to_string(), actual });
    }
    Ok(())
}

/// Downloads the four files of `kind` into `data_dir/<name>/`, trying `mirrors` in order for
/// each file; files already present with the right content are kept. `report` hears of every
/// attempt (for the command line's messages).
pub fn download(
    kind: DatasetKind,
    data_dir: &Path,
    mirrors: &[String],
    mut report: impl FnMut(&str),
) -> Result<Vec<Fetched>> {
    if !kind.is_named() {
        return Err(Error::config(
            "dataset",
            format!("'{}' is your own data: there is nothing to download", kind.name()),
        ));
    }
    if let Some(archive) = archive(kind) {
        return download_archive(kind, &archive, data_dir, mirrors, report);
    }
    let folder = data_dir.join(kind.name());
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(600))).build().into();
    let mut done = Vec::new();
    for (name, expected) in IDX_FILES.iter().zip(expected_sha256(kind)) {
        let target = folder.join(format!("{name}.gz"));
        if let Ok(bytes) = std::fs::read(&target) {
            if verify(bytes, &target.display().to_string(), expected).is_ok() {
                report(&format!("{}: present, checksum ok", target.display()));
                done.push(Fetched::Present(target));
                continue;
            }
            report(&format!("{}: present but its checksum is wrong, downloading again", target.display()));
        }
        let mut failures = Vec::new();
        let mut fetched = None;
        for mirror in mirrors {
            let url = format!("{}/{name}.gz", mirror.trim_end_matches('/'));
            report(&format!("fetching {url}"));
            match fetch(&agent, &url).and_then(|bytes| verify(bytes.clone(), &url, expected).map(|()| bytes)) {
                Ok(bytes) => {
                    fetched = Some((bytes, url));
                    break;
                }
                Err(e) => {
                    report(&format!("  {e}"));
                    failures.push(e.to_string());
                }
            }
        }
        let Some((bytes, url)) = fetched else {
            return Err(Error::Download {
                url: format!("{name}.gz"),
                message: format!("every mirror failed:\n  {}", failures.join("\n  ")),
            });
        };
        write_atomically(&target, &bytes)?;
        done.push(Fetched::Downloaded(target, url));
    }
    Ok(done)
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads a CIFAR archive (the first mirror whose copy has the published MD5), and writes its
/// `members` into `data_dir/<the archive's folder>/`, each atomically. A folder that already
/// holds every member is left alone.
pub fn download_archive(
    kind: DatasetKind,
    archive: &Archive,
    data_dir: &Path,
    mirrors: &[String],
    mut report: impl FnMut(&str),
) -> Result<Vec<Fetched>> {
    let folder = data_dir.join(super::cifar::folders(kind)[0]);
    let targets: Vec<PathBuf> = archive.members.iter().map(|m| folder.join(m)).collect();
    if targets.iter().all(|t| t.is_file()) {
        report(&format!("{}: present", folder.display()));
        return Ok(targets.into_iter().map(Fetched::Present).collect());
    }
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(1800))).build().into();
    let mut failures = Vec::new();
    for mirror in mirrors {
        let url = format!("{}/{}", mirror.trim_end_matches('/'), archive.file);
        report(&format!("fetching {url}"));
        let bytes = match fetch(&agent, &url) {
            Ok(b) => b,
            Err(e) => {
                report(&format!("  {e}"));
                failures.push(e.to_string());
                continue;
            }
        };
        let actual = md5_hex(&bytes);
        if actual != archive.md5 {
            let e = Error::Checksum { what: url.clone(), expected: format!("MD5 {}", archive.md5), actual };
            report(&format!("  {e}"));
            failures.push(e.to_string());
            continue;
        }
        let members = extract(&bytes, archive.members, &url)?;
        for (name, content) in &members {
            write_atomically(&folder.join(name), content)?;
        }
        return Ok(members.into_iter().map(|(name, _)| Fetched::Downloaded(folder.join(name), url.clone())).collect());
    }
    Err(Error::Download {
        url: archive.file.into(),
        message: format!("every mirror failed:\n  {}", failures.join("\n  ")),
    })
}

/// The `wanted` members of a `.tar.gz` (matched by file name, wherever they sit in the archive;
/// nothing else is written, so no path in the archive can escape the data folder).
fn extract(bytes: &[u8], wanted: &[&str], url: &str) -> Result<Vec<(String, Vec<u8>)>> {
    use std::io::Read;
    let bad = |m: String| Error::Download { url: url.into(), message: format!("not a valid .tar.gz archive: {m}") };
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut found: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).filter(|n| wanted.contains(n)) else {
            continue;
        };
        let name = name.to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|e| bad(e.to_string()))?;
        found.push((name, content));
    }
    let missing: Vec<&str> = wanted.iter().filter(|w| !found.iter().any(|(n, _)| n == *w)).copied().collect();
    if !missing.is_empty() {
        return Err(bad(format!("it lacks {}", missing.join(", "))));
    }
    Ok(found)
}
