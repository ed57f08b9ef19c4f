//! Decompression of batch record sections (gzip, snappy, lz4, zstd) with a bound on the
//! output, so a small hostile batch cannot expand into gigabytes; and record iteration over
//! any stored batch, compressed or not.

use crate::batch::{BatchHeader, HEADER_LEN};
use crate::error::BatchError;
use crate::record::{Record, Records};
use std::io::Read;

/// Decompressed bytes a single batch may expand to.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Why a batch's records could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    #[error("{codec} data is corrupt: {detail}")]
    Corrupt { codec: &'static str, detail: String },
    #[error("batch decompresses to more than {max} bytes")]
    TooLarge { max: usize },
    #[error(transparent)]
    Record(#[from] BatchError),
}

fn read_capped(mut r: impl Read, codec: &'static str, max: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    (&mut r)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Corrupt { codec, detail: e.to_string() })?;
    if out.len() > max {
        return Err(CodecError::TooLarge { max });
    }
    Ok(out)
}

/// Snappy as Kafka clients write it: xerial's framing (Java) or one raw block (librdkafka).
fn snappy(data: &[u8], max: usize) -> Result<Vec<u8>, CodecError> {
    const XERIAL: &[u8] = b"\x82SNAPPY\x00";
    let corrupt = |e: snap::Error| CodecError::Corrupt { codec: "snappy", detail: e.to_string() };
    let mut out = Vec::new();
    let block = |b: &[u8], out: &mut Vec<u8>| -> Result<(), CodecError> {
        let len = snap::raw::decompress_len(b).map_err(corrupt)?;
        if out.len() + len > max {
            return Err(CodecError::TooLarge { max });
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new().decompress(b, &mut out[start..]).map_err(corrupt)?;
        Ok(())
    };
    if data.starts_with(XERIAL) && data.len() >= 16 {
        let mut rest = &data[16..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(CodecError::Corrupt { codec: "snappy", detail: "truncated block length".into() });
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let b =
                rest.get(4..4 + n).ok_or(CodecError::Corrupt { codec: "snappy", detail: "truncated block".into() })?;
            block(b, &mut out)?;
            rest = &rest[4 + n..];
        }
    } else {
        block(data, &mut out)?;
    }
    Ok(out)
}

/// Decompresses a records section compressed with Kafka codec `codec` (1-4).
pub fn decompress(codec: u8, data: &[u8], max: usize) -> Result<Vec<u8>, CodecError> {
    match codec {
        1 => read_capped(flate2::read::GzDecoder::new(data), "gzip", max),
        2 => snappy(data, max),
        3 => read_capped(lz4_flex::frame::FrameDecoder::new(data), "lz4", max),
        4 => {
            let d = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| CodecError::Corrupt { codec: "zstd", detail: e.to_string() })?;
            read_capped(d, "zstd", max)
        }
        c => Err(CodecError::UnknownCodec(c)),
    }
}

/// Calls `f` with every record of a stored batch (`batch` = exactly one whole batch).
pub fn for_each_record(batch: &[u8], header: &BatchHeader, mut f: impl FnMut(&Record<'_>)) -> Result<(), CodecError> {
    let end = header.total_len().min(batch.len());
    if header.compression() == 0 {
        for r in Records::new(batch, header) {
            f(&r?);
        }
        return Ok(());
    }
    let plain = decompress(header.compression(), &batch[HEADER_LEN..end], DECOMPRESSED_BYTES_MAX)?;
    for r in Records::over(&plain, header.records_count) {
        f(&r?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    #[test]
    fn every_codec_round_trips_and_bombs_are_refused() {
        let plain = vec![7u8; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        let mut lz4 = lz4;
        lz4.write_all(&plain).unwrap();
        let lz4 = lz4.finish().unwrap();
        let snappy = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        for (codec, data) in [(1u8, &gz), (2, &snappy), (3, &lz4)] {
            assert_eq!(decompress(codec, data, 2 << 20).unwrap(), plain, "codec {codec}");
            assert!(matches!(decompress(codec, data, 1000), Err(CodecError::TooLarge { max: 1000 })), "codec {codec}");
        }
        assert!(matches!(decompress(1, b"not gzip", 100), Err(CodecError::Corrupt { .. })));
        assert!(matches!(decompress(9, b"", 100), Err(CodecError::UnknownCodec(9))));
    }
}
