//! Data loading on the real files, and every kind of damaged file as a clear error.

mod common;

use dfa::data::{self, DatasetKind, IDX_FILES, download, idx};
use flate2::{Compression, write::GzEncoder};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn loads_real_mnist() {
    let d = data::load(DatasetKind::Mnist, &common::data_dir()).unwrap();
    assert_eq!((d.train.len(), d.test.len(), d.train.dim, d.n_classes), (60000, 10000, 784, 10));
    // the well-known first labels and pixel mean of MNIST (../shared/data/README.md)
    assert_eq!(&d.train.labels[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&d.test.labels[..5], &[7, 2, 1, 0, 4]);
    let mean = d.train.images.iter().map(|&v| v as f64).sum::<f64>() / d.train.images.len() as f64;
    assert!((mean - 0.1306605).abs() < 1e-6, "mean {mean}");
    assert!(d.train.images.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(d.files.len(), 4);
    assert_eq!(d.files[0].sha256, "71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64");
}

#[test]
fn loads_fashion_mnist_when_installed() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        // .ci/run installs it (apt-get install dataset-fashion-mnist) and sets
        // DFA_REQUIRE_FASHION_MNIST=1, so that CI fails rather than skips; elsewhere it is optional
        let required = std::env::var_os("DFA_REQUIRE_FASHION_MNIST").is_some_and(|v| v == "1");
        assert!(
            !required && std::env::var_os("CI").is_none(),
            "{} absent: install dataset-fashion-mnist",
            dir.display()
        );
        eprintln!("note: {} absent, Fashion-MNIST loader not exercised", dir.display());
        return;
    }
    let d = data::load(DatasetKind::FashionMnist, dir).unwrap();
    assert_eq!((d.train.len(), d.test.len(), d.train.dim), (60000, 10000, 784));
    assert_eq!(&d.train.labels[..3], &[9, 0, 0]); // ankle boot, T-shirt, T-shirt
}

/// A data folder holding MNIST's four files as symbolic links, with `file` replaced by `bytes`
/// (written raw, under its name without `.gz`, when `raw`).
fn damaged_copy(file: usize, bytes: &[u8], raw: bool) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("mnist");
    std::fs::create_dir(&folder).unwrap();
    for (k, name) in IDX_FILES.iter().enumerate() {
        let gz = format!("{name}.gz");
        if k == file {
            let target = folder.join(if raw { name.to_string() } else { gz });
            std::fs::write(&target, bytes).unwrap();
        } else {
            std::os::unix::fs::symlink(common::mnist_dir().join(&gz), folder.join(&gz)).unwrap();
        }
    }
    let damaged = folder.join(if raw { IDX_FILES[file].to_string() } else { format!("{}.gz", IDX_FILES[file]) });
    (tmp, damaged)
}

fn load_error(dir: &Path) -> String {
    data::load(DatasetKind::Mnist, dir).expect_err("damaged data must not load").to_string()
}

#[test]
fn truncated_gzip_is_a_clear_error() {
    let real = std::fs::read(common::mnist_dir().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let (tmp, damaged) = damaged_copy(2, &real[..real.len() / 2], false);
    let e = load_error(tmp.path());
    assert!(e.contains(&damaged.display().to_string()) && e.contains("not a valid gzip stream"), "{e}");
}

#[test]
fn corrupt_gzip_body_is_a_clear_error() {
    let mut bytes = std::fs::read(common::mnist_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 3..n / 3 + 64] {
        *b ^= 0x5a;
    }
    let (tmp, damaged) = damaged_copy(3, &bytes, false);
    let e = load_error(tmp.path());
    assert!(e.contains(&damaged.display().to_string()) && e.contains("not a valid gzip stream"), "{e}");
}

#[test]
fn wrong_magic_is_a_clear_error() {
    let mut raw = gunzip(&common::mnist_dir().join("t10k-labels-idx1-ubyte.gz"));
    raw[0] = 0x1f;
    raw[1] = 0x00;
    let (tmp, damaged) = damaged_copy(3, &raw, true);
    let e = load_error(tmp.path());
    assert!(e.contains(&damaged.display().to_string()) && e.contains("bad magic number 1f000801"), "{e}");
}

#[test]
fn truncated_raw_images_are_a_clear_error() {
    let raw = gunzip(&common::mnist_dir().join("t10k-images-idx3-ubyte.gz"));
    let (tmp, _) = damaged_copy(2, &raw[..raw.len() - 1000], true);
    let e = load_error(tmp.path());
    assert!(e.contains("truncated: dimensions [10000, 28, 28] need 7840000 data bytes, file has 7839000"), "{e}");
}

#[test]
fn image_label_count_mismatch_is_a_clear_error() {
    // a valid label file of 9999 labels beside 10000 images
    let raw = gunzip(&common::mnist_dir().join("t10k-labels-idx1-ubyte.gz"));
    let labels = idx::encode(&[9999], &raw[8..8 + 9999]);
    let (tmp, _) = damaged_copy(3, &gzip(&labels), false);
    let e = load_error(tmp.path());
    assert!(e.contains("holds 10000 images but") && e.contains("holds 9999 labels"), "{e}");
}

#[test]
fn out_of_range_label_is_a_clear_error() {
    let mut raw = gunzip(&common::mnist_dir().join("t10k-labels-idx1-ubyte.gz"));
    raw[8 + 17] = 12;
    let (tmp, _) = damaged_copy(3, &gzip(&raw), false);
    let e = load_error(tmp.path());
    assert!(e.contains("label 12 at position 17 is outside 0..10"), "{e}");
}

#[test]
fn missing_data_names_the_files_and_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let e = load_error(tmp.path());
    assert!(e.contains("train-images-idx3-ubyte.gz") && e.contains("t10k-labels-idx1-ubyte.gz"), "{e}");
    assert!(e.contains("dfa data download mnist"), "{e}");
}

/// A loopback HTTP/1.1 server: `GET /<prefix>/<name>` answers with `files(prefix, name)` or 404.
fn serve(files: impl Fn(&str, &str) -> Option<Vec<u8>> + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req).lines().next().unwrap_or("").to_string();
            let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let (prefix, name) = path.split_once('/').unwrap_or(("", &path));
            let _ = match files(prefix, name) {
                Some(body) => stream
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&body)),
                None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    format!("http://{addr}")
}

#[test]
fn download_verifies_checksums_and_falls_back_across_mirrors() {
    let source = common::mnist_dir();
    // mirror "bad" serves a damaged training-label file, "good" the real ones, "none" nothing
    let base = serve(move |prefix, name| {
        let mut bytes = std::fs::read(source.join(name)).ok()?;
        match prefix {
            "good" => Some(bytes),
            "bad" => {
                if name.starts_with("train-labels") {
                    let raw = gunzip(&source.join(name));
                    let mut raw = raw.clone();
                    raw[100] ^= 1;
                    bytes = gzip(&raw);
                }
                Some(bytes)
            }
            _ => None,
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let mirrors = vec![format!("{base}/none/"), format!("{base}/bad"), format!("{base}/good/")];
    let mut log = Vec::new();
    let got = download::download(DatasetKind::Mnist, tmp.path(), &mirrors, |m| log.push(m.to_string())).unwrap();
    let urls: Vec<String> = got
        .iter()
        .map(|f| match f {
            download::Fetched::Downloaded(_, url) => url.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    // train images from "bad" (intact there), train labels only from "good" after a checksum failure
    assert!(urls[0].contains("/bad/") && urls[1].contains("/good/"), "{urls:?}");
    assert!(log.iter().any(|m| m.contains("404")), "{log:?}");
    assert!(log.iter().any(|m| m.contains("SHA-256")), "{log:?}");
    let d = data::load(DatasetKind::Mnist, tmp.path()).unwrap();
    assert_eq!(d.train.len(), 60000);
    // no temporary files left behind
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("mnist"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    // a second run finds everything present and fetches nothing
    let again =
        download::download(DatasetKind::Mnist, tmp.path(), &["http://127.0.0.1:9/".to_string()], |_| {}).unwrap();
    assert!(again.iter().all(|f| matches!(f, download::Fetched::Present(_))));
}

#[test]
fn download_with_only_bad_mirrors_fails_and_writes_nothing() {
    let source = common::mnist_dir();
    let base = serve(move |_, name| {
        let raw = gunzip(&source.join(name));
        let mut raw = raw.clone();
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        Some(gzip(&raw))
    });
    let tmp = tempfile::tempdir().unwrap();
    let e =
        download::download(DatasetKind::Mnist, tmp.path(), &[format!("{base}/x/")], |_| {}).unwrap_err().to_string();
    assert!(e.contains("every mirror failed") && e.contains("SHA-256"), "{e}");
    let folder = tmp.path().join("mnist");
    let left = std::fs::read_dir(&folder).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "nothing may be written under {}", folder.display());
}

// ---------- CIFAR ----------

/// One CIFAR record: `labels` (1 byte for CIFAR-10, coarse + fine for CIFAR-100), pixels `p`.
fn record(labels: &[u8], p: u8) -> Vec<u8> {
    let mut r = labels.to_vec();
    r.extend(std::iter::repeat_n(p, 3072));
    r
}

#[test]
fn loads_real_cifar10_with_its_partial_test_set_noted() {
    let d = data::load(DatasetKind::Cifar10, &common::data_dir()).unwrap();
    assert_eq!((d.train.len(), d.train.dim, d.n_classes), (50000, 3072, 10));
    let mut counts = [0usize; 10];
    d.train.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [5000; 10]);
    // the commonly quoted per-channel means (channel-major layout: R plane, G plane, B plane)
    for (c, want) in [0.49139968, 0.48215841, 0.44653091].iter().enumerate() {
        let sum: f64 =
            d.train.images.chunks_exact(3072).map(|img| img[c * 1024..(c + 1) * 1024].iter().sum::<f32>() as f64).sum();
        let mean = sum / (50000.0 * 1024.0);
        assert!((mean - want).abs() < 1e-5, "channel {c}: mean {mean}");
    }
    // ../shared/data has 9980 of the 10000 test images; the official order starts 3 8 8 0 6 6 1 6 3 1
    assert_eq!(d.test.len(), 9980);
    assert_eq!(&d.test.labels[..10], &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    assert_eq!(d.files.len(), 6);
    assert!(d.notes.iter().any(|n| n.contains("incomplete") && n.contains("9980")), "{:?}", d.notes);
}

#[test]
fn cifar100_fine_and_coarse_labels_and_damaged_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    let train: Vec<u8> = (0..5u8).flat_map(|i| record(&[i, 20 + i], i)).collect();
    let test: Vec<u8> = record(&[19, 99], 7);
    std::fs::write(dir.join("train.bin"), &train).unwrap();
    std::fs::write(dir.join("test.bin.gz"), gzip(&test)).unwrap();
    let fine = data::load(DatasetKind::Cifar100, tmp.path()).unwrap();
    assert_eq!(
        (fine.n_classes, fine.train.labels.clone(), fine.test.labels.clone()),
        (100, vec![20, 21, 22, 23, 24], vec![99])
    );
    assert_eq!(fine.train.images[3072], 1.0 / 255.0);
    let coarse = data::load(DatasetKind::Cifar100Coarse, tmp.path()).unwrap();
    assert_eq!((coarse.n_classes, coarse.train.labels.clone()), (20, vec![0, 1, 2, 3, 4]));
    assert!(fine.notes.is_empty());

    // a truncated record, a label out of range, missing files: errors that name the file
    std::fs::write(dir.join("train.bin"), &train[..train.len() - 10]).unwrap();
    let e = data::load(DatasetKind::Cifar100, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("train.bin") && e.contains("3074-byte"), "{e}");
    let mut bad = train.clone();
    bad[2 * 3074] = 20; // coarse label of record 2
    std::fs::write(dir.join("train.bin"), &bad).unwrap();
    assert!(data::load(DatasetKind::Cifar100, tmp.path()).is_ok(), "the fine labels are fine");
    let e = data::load(DatasetKind::Cifar100Coarse, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("train.bin") && e.contains("label 20 of record 2") && e.contains("0..20"), "{e}");
    std::fs::remove_file(dir.join("test.bin.gz")).unwrap();
    let e = data::load(DatasetKind::Cifar100, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("test.bin") && e.contains("dfa data download cifar100"), "{e}");
    let e = data::load(DatasetKind::Cifar10, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("data_batch_1.bin") && e.contains("test_batch.bin"), "{e}");
}

fn tar_gz(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, content) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, &content[..]).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn cifar_archives_are_checked_and_only_their_members_written() {
    let members: Vec<(&str, Vec<u8>)> = vec![
        ("cifar-100-binary/train.bin", (0..3u8).flat_map(|i| record(&[i, i], i)).collect()),
        ("cifar-100-binary/test.bin", record(&[1, 1], 9)),
        ("cifar-100-binary/fine_label_names.txt", b"apple\n".to_vec()),
        ("cifar-100-binary/coarse_label_names.txt", b"fruit\n".to_vec()),
        ("cifar-100-binary/extra.txt", b"not wanted".to_vec()),
    ];
    let good = tar_gz(&members);
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let short = tar_gz(&members[..1]);
    let (good_md5, short_md5) = (md5_hex(&good), md5_hex(&short));
    let base = serve(move |prefix, name| {
        assert_eq!(name, "cifar-100-binary.tar.gz");
        match prefix {
            "good" => Some(good.clone()),
            "corrupt" => Some(corrupt.clone()),
            "short" => Some(short.clone()),
            _ => None,
        }
    });
    let file = "cifar-100-binary.tar.gz";
    let wanted: &[&str] = &["train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt"];
    let tmp = tempfile::tempdir().unwrap();
    let archive = download::Archive { file, md5: Box::leak(good_md5.into_boxed_str()), members: wanted };
    let mirrors = vec![format!("{base}/none"), format!("{base}/corrupt"), format!("{base}/good")];
    let mut log = Vec::new();
    let got =
        download::download_archive(DatasetKind::Cifar100, &archive, tmp.path(), &mirrors, |m| log.push(m.to_string()))
            .unwrap();
    assert_eq!(got.len(), 4);
    assert!(log.iter().any(|m| m.contains("404")) && log.iter().any(|m| m.contains("MD5")), "{log:?}");
    let mut names: Vec<String> = std::fs::read_dir(tmp.path().join("cifar-100-binary"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    assert_eq!(names, ["coarse_label_names.txt", "fine_label_names.txt", "test.bin", "train.bin"]);
    let d = data::load(DatasetKind::Cifar100, tmp.path()).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (3, 1));
    // present: nothing fetched
    let again = download::download_archive(DatasetKind::Cifar100, &archive, tmp.path(), &[], |_| {}).unwrap();
    assert!(again.iter().all(|f| matches!(f, download::Fetched::Present(_))));

    // an archive with the right checksum but without the members: an error, nothing written
    let other = tempfile::tempdir().unwrap();
    let archive = download::Archive { file, md5: Box::leak(short_md5.into_boxed_str()), members: wanted };
    let e =
        download::download_archive(DatasetKind::Cifar100, &archive, other.path(), &[format!("{base}/short")], |_| {})
            .unwrap_err()
            .to_string();
    assert!(e.contains("lacks") && e.contains("test.bin"), "{e}");
    assert!(!other.path().join("cifar-100-binary").exists());
}

#[test]
fn a_label_file_with_an_image_magic_says_so() {
    // the test images' file put where the test labels belong
    let images = std::fs::read(common::mnist_dir().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let (tmp, damaged) = damaged_copy(3, &images, false);
    let e = load_error(tmp.path());
    assert!(e.contains(&damaged.display().to_string()), "{e}");
    assert!(e.contains("declares 3 dimensions; expected a label file (magic 00000801)"), "{e}");
    assert!(!e.contains("overflow"), "{e}");
}

#[test]
fn a_split_of_zero_images_is_a_clear_error() {
    let (tmp, damaged) = damaged_copy(0, &gzip(&idx::encode(&[0, 28, 28], &[])), false);
    let e = load_error(tmp.path());
    assert!(e.contains(&damaged.display().to_string()) && e.contains("holds 0 images"), "{e}");
    assert!(!e.contains("validation"), "{e}");
}

#[test]
fn test_images_of_another_shape_are_refused() {
    // 10000 images of 14×56: as many pixels as 28×28, another shape
    let raw = gunzip(&common::mnist_dir().join("t10k-images-idx3-ubyte.gz"));
    let (tmp, _) = damaged_copy(2, &gzip(&idx::encode(&[10000, 14, 56], &raw[16..])), false);
    let e = load_error(tmp.path());
    assert!(e.contains("test images are 14×56 pixels, training images") && e.contains("28×28"), "{e}");
}

#[test]
fn multi_member_gzip_loads_and_garbage_after_gzip_is_refused() {
    // `cat a.gz b.gz`: a valid gzip file of two members, as gzip -d reads it
    let raw = gunzip(&common::mnist_dir().join("t10k-labels-idx1-ubyte.gz"));
    let mut two = gzip(&raw[..5000]);
    two.extend(gzip(&raw[5000..]));
    let (tmp, _) = damaged_copy(3, &two, false);
    let d = data::load(DatasetKind::Mnist, tmp.path()).unwrap();
    assert_eq!(d.test.labels, raw[8..]);

    let mut trailing = gzip(&raw);
    trailing.extend_from_slice(b"garbage after the stream");
    let (tmp, damaged) = damaged_copy(3, &trailing, false);
    let e = load_error(tmp.path());
    assert!(e.contains(&damaged.display().to_string()) && e.contains("bytes after the last gzip member"), "{e}");
}
