//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
//!
//! Layout: two zero bytes, a type code (`0x08` = unsigned byte, the only one MNIST uses), the
//! number of dimensions `d`, then `d` big-endian `u32` sizes, then the values in row-major order.
//! Images are `d = 3` (`count × rows × cols`), labels `d = 1`.

use crate::base::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// A parsed unsigned-byte IDX array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Whether `bytes` start with the gzip magic `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// A gzip reader over `bytes`: every member of a multi-member file in turn (as `gzip -d` reads
/// them); bytes after the last member that are not another member are an error.
pub fn gunzip_reader(bytes: &[u8]) -> flate2::read::MultiGzDecoder<&[u8]> {
    flate2::read::MultiGzDecoder::new(bytes)
}

fn gzip_error(path: &Path, e: std::io::Error) -> Error {
    Error::Gzip { path: path.to_path_buf(), message: e.to_string() }
}

/// Decompresses `bytes` when they are gzip, reading at most `limit` bytes of output: a file that
/// inflates to more is refused as soon as it passes the limit, so that a small file cannot fill
/// the memory. Other bytes are returned as they are.
pub fn maybe_gunzip(bytes: Vec<u8>, path: &Path, limit: usize) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    gunzip_reader(&bytes).take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| gzip_error(path, e))?;
    if out.len() > limit {
        return Err(Error::format(
            path,
            format!("inflates to more than {limit} bytes, more than this data set can hold"),
        ));
    }
    Ok(out)
}

/// Reads up to `buf.len()` bytes; fewer only at the end of the input.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn read_full(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    read_up_to(r, buf).map_err(|e| gzip_error(path, e))
}

/// Parses an IDX array from `r` (raw or inflating bytes); `path` only names the file in errors.
///
/// The header is read and checked first — its dimension count must be `ndim` when given — and
/// then exactly the bytes it declares: the output buffer grows with the bytes that arrive (never
/// to the declared size up front), and one byte more than declared is an error at once, so a
/// compressed file that inflates far beyond its header costs no more memory than the header
/// declares.
pub fn parse_from(r: &mut impl Read, path: &Path, ndim: Option<usize>) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    let got = read_full(r, &mut magic, path)?;
    if got < 4 {
        return Err(Error::format(path, format!("file is {got} bytes, shorter than the 4-byte IDX header")));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(Error::format(
            path,
            format!(
                "bad magic number {:02x}{:02x}{:02x}{:02x}: an IDX file starts with two zero bytes (e.g. 00000801 for labels, 00000803 for images)",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(Error::format(path, format!("IDX type code 0x{:02x}, expected 0x08 (unsigned byte)", magic[2])));
    }
    let d = magic[3] as usize;
    if d == 0 {
        return Err(Error::format(path, "IDX header declares 0 dimensions"));
    }
    if let Some(want) = ndim.filter(|&want| want != d) {
        let what = if want == 1 { "a label file (magic 00000801)" } else { "an image file (magic 00000803)" };
        return Err(Error::format(
            path,
            format!("magic number 000008{d:02x} declares {d} dimensions; expected {what}"),
        ));
    }
    let header = 4 + 4 * d;
    let mut sizes = vec![0u8; 4 * d];
    let got = read_full(r, &mut sizes, path)?;
    if got < sizes.len() {
        return Err(Error::format(
            path,
            format!("truncated header: {d} dimensions need {header} bytes, file has {}", 4 + got),
        ));
    }
    let dims: Vec<usize> =
        sizes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let Some(count) = count else {
        return Err(Error::format(path, format!("dimensions {dims:?} overflow")));
    };
    let mut data = Vec::new();
    r.take(count as u64).read_to_end(&mut data).map_err(|e| gzip_error(path, e))?;
    if data.len() < count {
        return Err(Error::format(
            path,
            format!("truncated: dimensions {dims:?} need {count} data bytes, file has {}", data.len()),
        ));
    }
    let mut more = [0u8; 4096];
    let mut trailing = 0usize;
    loop {
        // an inflating reader checks the last member's CRC here, and reads any bytes after it
        // as another member
        let n = read_up_to(r, &mut more).map_err(|e| {
            Error::format(
                path,
                format!(
                    "not a valid gzip stream after the {count} declared bytes ({e}): a corrupt checksum, or bytes after the last gzip member that are not another member"
                ),
            )
        })?;
        trailing += n;
        // a raw file's trailing bytes are counted to the end; an inflating one stops at once
        if n < more.len() || trailing >= 1 << 20 {
            break;
        }
    }
    if trailing > 0 {
        let amount = if trailing >= 1 << 20 { "more than 1 MiB".to_string() } else { format!("{trailing} bytes") };
        return Err(Error::format(
            path,
            format!("{amount} of trailing data after the {count} declared by dimensions {dims:?}"),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Parses an uncompressed IDX file; `path` only names the file in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    parse_from(&mut &bytes[..], path, None)
}

/// Parses IDX bytes as stored (raw or gzip), expecting `ndim` dimensions when given.
pub fn parse_stored(bytes: &[u8], path: &Path, ndim: Option<usize>) -> Result<IdxArray> {
    if is_gzip(bytes) {
        parse_from(&mut gunzip_reader(bytes), path, ndim)
    } else {
        parse_from(&mut &bytes[..], path, ndim)
    }
}

/// Reads and parses an IDX file from disk (gzip detected by its magic bytes).
pub fn read(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_stored(&raw, path, None)
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
            let _ = parse_stored(&bytes, p(), None);
            if let Ok(raw) = maybe_gunzip(bytes, p(), 1 << 16) {
                let _ = parse(&raw, p());
            }
        }
    }
}
