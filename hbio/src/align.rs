//! Buffers aligned for O_DIRECT: mirrord's volume I/O and hbd's heartbeat
//! slots both read and write block devices and direct-I/O files. A buffer
//! is owned by one thread or op at a time (it moves, it is never shared
//! mutably); [`crate::BufPool`] keeps them for reuse.

/// Alignment of every buffer and of O_DIRECT offsets and lengths.
pub const ALIGN: usize = 4096;

/// One aligned block: a buffer is a run of them, so its allocation is
/// aligned and exactly as long as its blocks (no slack to align within,
/// which would double a 4 KiB buffer).
#[derive(Clone, Copy, zerocopy::IntoBytes, zerocopy::FromBytes, zerocopy::Immutable)]
#[repr(C, align(4096))]
struct Block([u8; ALIGN]);

/// A zero-filled byte buffer whose start is [`ALIGN`]-aligned, as O_DIRECT needs.
pub struct AlignedBuf {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf {
            blocks: vec![Block([0; ALIGN]); len.div_ceil(ALIGN)],
            len,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &zerocopy::IntoBytes::as_bytes(&self.blocks[..])[..self.len]
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut zerocopy::IntoBytes::as_mut_bytes(&mut self.blocks[..])[..self.len]
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned() {
        for len in [0, 1, 4096, 4097, 65536] {
            let mut b = AlignedBuf::zeroed(len);
            assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.len(), len);
            assert!(b.as_slice().iter().all(|x| *x == 0));
            b.as_mut_slice().fill(1);
            assert_eq!(b.as_slice().len(), len);
            assert_eq!(
                b.blocks.capacity() * ALIGN,
                len.div_ceil(ALIGN) * ALIGN,
                "no slack"
            );
        }
    }
}
