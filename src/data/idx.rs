//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
//!
//! Layout: two zero bytes, a type code (`0x08` = unsigned byte, the only one MNIST uses), the
//! number of dimensions `d`, then `d` big-endian `u32` sizes, then the values in row-major order.
//! Images are `d = 3` (`count × rows × cols`), labels `d = 1`.

use crate::base::error::{Error, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// A parsed unsigned-byte IDX array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Decompresses `bytes` when they start with the gzip magic `1f 8b`, else returns them as is.
pub fn maybe_gunzip(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::Gzip { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Parses an uncompressed IDX file; `path` only names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(Error::format(path, format!("file is {} bytes, shorter than the 4-byte IDX header", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::format(
            path,
            format!(
                "bad magic number {:02x}{:02x}{:02x}{:02x}: an IDX file starts with two zero bytes (e.g. 00000801 for labels, 00000803 for images)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(Error::format(path, format!("IDX type code 0x{:02x}, expected 0x08 (unsigned byte)", bytes[2])));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(Error::format(path, "IDX header declares 0 dimensions"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(Error::format(
            path,
            format!("truncated header: {ndim} dimensions need {header} bytes, file has {}", bytes.len()),
        ));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let Some(count) = count else {
        return Err(Error::format(path, format!("dimensions {dims:?} overflow")));
    };
    let body = bytes.len() - header;
    if body < count {
        return Err(Error::format(
            path,
            format!("truncated: dimensions {dims:?} need {count} data bytes, file has {body}"),
        ));
    }
    if body > count {
        return Err(Error::format(
            path,
            format!("{} bytes of trailing data after the {count} declared by dimensions {dims:?}", body - count),
        ));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

/// Reads and parses an IDX file from disk (gzip detected by its magic bytes).
pub fn read(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&maybe_gunzip(raw, path)?, path)
}

/// Encodes an unsigned-byte IDX array (used by tests and by whoever writes subsets).
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p() -> &'static Path {
        Path::new("test.idx")
    }

    #[test]
    fn parses_a_small_image_file() {
        let bytes = encode(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let a = parse(&bytes, p()).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data[11], 12);
    }

    #[test]
    fn rejects_bad_headers_with_reasons() {
        let msg = |b: &[u8]| parse(b, p()).unwrap_err().to_string();
        assert!(msg(&[0, 0]).contains("shorter than the 4-byte"));
        assert!(msg(&[1, 2, 8, 1, 0, 0, 0, 0]).contains("bad magic"));
        assert!(msg(&[0, 0, 0x0d, 1, 0, 0, 0, 0]).contains("type code 0x0d"));
        assert!(msg(&[0, 0, 8, 3, 0, 0]).contains("truncated header"));
        assert!(msg(&encode(&[5], &[1, 2])).contains("truncated: dimensions [5] need 5"));
        assert!(msg(&encode(&[1], &[1, 2])).contains("trailing"));
    }

    proptest! {
        /// Any bytes at all: an error or an array, never a panic; an array is self-consistent.
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(a) = parse(&bytes, p()) {
                prop_assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
            }
        }

        /// Valid headers with random dimensions and bodies cut at random places.
        #[test]
        fn round_trips_and_detects_truncation(
            dims in proptest::collection::vec(1usize..6, 1..4),
            cut in 0usize..200,
            seed in any::<u8>(),
        ) {
            let n: usize = dims.iter().product();
            let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let bytes = encode(&dims, &data);
            let parsed = parse(&bytes, p()).unwrap();
            prop_assert_eq!(&parsed.dims, &dims);
            prop_assert_eq!(&parsed.data, &data);
            let cut = cut.min(bytes.len());
            if cut < bytes.len() {
                prop_assert!(parse(&bytes[..cut], p()).is_err());
            }
        }

        /// gzip of garbage after a valid gzip magic is an error, not a panic.
        #[test]
        fn bad_gzip_is_an_error(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = vec![0x1f, 0x8b];
            bytes.extend(tail);
            if let Ok(raw) = maybe_gunzip(bytes, p()) {
                let _ = parse(&raw, p());
            }
        }
    }
}
