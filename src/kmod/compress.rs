//! Module compression: detection by magic bytes (never by file name, as libkmod does)
//! and in-process decompression in pure Rust (xz, zstd, gzip) for kernels that cannot
//! decompress a module themselves. Output is capped so a bomb cannot exhaust memory.

use std::io::Read;

/// Largest decompressed module accepted (the biggest Debian module is ~20 MiB).
pub const MAX_MODULE_BYTES: u64 = 512 * 1024 * 1024;

/// How a module file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain ELF.
    None,
    /// `.ko.xz`.
    Xz,
    /// `.ko.zst`.
    Zstd,
    /// `.ko.gz`.
    Gzip,
}

impl Compression {
    /// Detects the format from the first bytes of the file.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
            Compression::Zstd
        } else if head.starts_with(&[0x1F, 0x8B]) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// The name `/sys/module/compression` uses for it.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }
}

/// A module that could not be decompressed.
#[derive(Debug)]
pub struct DecompressError {
    /// The format.
    pub format: Compression,
    /// What went wrong.
    pub reason: String,
}

impl std::fmt::Display for DecompressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot decompress {}: {}",
            self.format.kernel_name(),
            self.reason
        )
    }
}

impl std::error::Error for DecompressError {}

/// Returns the plain module bytes (borrowed when it was not compressed).
pub fn decompress(data: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, DecompressError> {
    let format = Compression::detect(data);
    let fail = |reason: String| DecompressError { format, reason };
    let mut out = Vec::new();
    match format {
        Compression::None => return Ok(std::borrow::Cow::Borrowed(data)),
        Compression::Xz => {
            let mut input = std::io::BufReader::new(data);
            let mut capped = CappedWriter { out: &mut out };
            lzma_rs::xz_decompress(&mut input, &mut capped).map_err(|e| fail(e.to_string()))?;
        }
        Compression::Zstd => {
            let decoder =
                ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| fail(e.to_string()))?;
            read_capped(decoder, &mut out).map_err(|e| fail(e.to_string()))?;
        }
        Compression::Gzip => {
            read_capped(flate2::read::GzDecoder::new(data), &mut out)
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(std::borrow::Cow::Owned(out))
}

fn read_capped(reader: impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    let read = reader.take(MAX_MODULE_BYTES + 1).read_to_end(out)?;
    if read as u64 > MAX_MODULE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_MODULE_BYTES} bytes"
        )));
    }
    Ok(())
}

struct CappedWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl std::io::Write for CappedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.out.len() + buf.len()) as u64 > MAX_MODULE_BYTES {
            return Err(std::io::Error::other(format!(
                "larger than {MAX_MODULE_BYTES} bytes"
            )));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const PLAIN: &[u8] = b"\x7fELF pretend module contents, repeated repeated repeated";

    #[test]
    fn detects_by_magic() {
        assert_eq!(Compression::detect(PLAIN), Compression::None);
        assert_eq!(
            Compression::detect(&[0xFD, b'7', b'z', b'X', b'Z', 0, 1]),
            Compression::Xz
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xB5, 0x2F, 0xFD]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(&[0x1F, 0x8B, 8]), Compression::Gzip);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn gzip_and_xz_round_trip() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(PLAIN).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(&*decompress(&gz).unwrap(), PLAIN);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut std::io::BufReader::new(PLAIN), &mut xz).unwrap();
        assert_eq!(&*decompress(&xz).unwrap(), PLAIN);
    }

    #[test]
    fn zstd_frame_made_by_the_zstd_tool() {
        // `printf '<PLAIN>' | zstd -c` (zstd 1.5.4): ruzstd has no encoder.
        const FRAME: &[u8] = &[
            0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x6d, 0x01, 0x00, 0x64, 0x02, 0x7f, 0x45, 0x4c,
            0x46, 0x20, 0x70, 0x72, 0x65, 0x74, 0x65, 0x6e, 0x64, 0x20, 0x6d, 0x6f, 0x64, 0x75,
            0x6c, 0x65, 0x20, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x73, 0x2c, 0x20, 0x72,
            0x65, 0x70, 0x65, 0x61, 0x74, 0x65, 0x64, 0x01, 0x00, 0xa6, 0x57, 0x9e, 0x18, 0x66,
            0xf1, 0x43,
        ];
        assert_eq!(&*decompress(FRAME).unwrap(), PLAIN);
    }

    #[test]
    fn corrupt_streams_are_errors() {
        for bad in [
            &[0xFD, b'7', b'z', b'X', b'Z', 0, 1, 2, 3][..],
            &[0x28, 0xB5, 0x2F, 0xFD, 9],
            &[0x1F, 0x8B, 8, 0, 1],
        ] {
            let err = decompress(bad).unwrap_err();
            assert!(err.to_string().starts_with("cannot decompress"));
        }
    }
}
