//! The per-log checkpoint: recovery point and log start offset, 28 bytes with a CRC.
//!
//! ```text
//! 0 magic "WCKP" | 4 version u16 = 1 | 6 reserved u16 = 0 | 8 recovery_point u64
//! 16 log_start_offset u64 | 24 crc32c u32 over bytes 0..24      (all big-endian)
//! ```

pub const FILE_NAME: &str = "checkpoint";
const MAGIC: &[u8; 4] = b"WCKP";
const VERSION: u16 = 1;
const RECOVERY_POINT: usize = 8;
const LOG_START: usize = RECOVERY_POINT + 8;
const CRC: usize = LOG_START + 8;
pub const LEN: usize = CRC + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Every offset below this was durable when the checkpoint was written.
    pub recovery_point: u64,
    pub log_start_offset: u64,
}

impl Checkpoint {
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_be_bytes());
        b[RECOVERY_POINT..LOG_START].copy_from_slice(&self.recovery_point.to_be_bytes());
        b[LOG_START..CRC].copy_from_slice(&self.log_start_offset.to_be_bytes());
        let crc = crc32c::crc32c(&b[..CRC]);
        b[CRC..].copy_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, &'static str> {
        if b.len() != LEN {
            return Err("wrong size");
        }
        if &b[..4] != MAGIC {
            return Err("bad magic");
        }
        if u16::from_be_bytes([b[4], b[5]]) != VERSION {
            return Err("unknown version");
        }
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&b[CRC..]);
        if u32::from_be_bytes(crc) != crc32c::crc32c(&b[..CRC]) {
            return Err("crc mismatch");
        }
        let mut rp = [0u8; 8];
        rp.copy_from_slice(&b[RECOVERY_POINT..LOG_START]);
        let mut ls = [0u8; 8];
        ls.copy_from_slice(&b[LOG_START..CRC]);
        Ok(Self { recovery_point: u64::from_be_bytes(rp), log_start_offset: u64::from_be_bytes(ls) })
    }
}
