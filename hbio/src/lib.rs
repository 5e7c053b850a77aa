//! # hbio: volume I/O for hbmirror
//!
//! Reads, writes and syncs of volume files and block devices, through
//! io_uring on a ring thread, or pread/pwrite where io_uring is refused,
//! with 4 KiB-aligned buffers (O_DIRECT) kept in a pool. It knows nothing
//! of volumes, pairs or sites: mirrord's volumes and hbd's heartbeat slots
//! both use it.
//!
//! Modules in reading order:
//!
//! - [`align`]: [`AlignedBuf`], a buffer aligned for O_DIRECT.
//! - [`pool`]: [`BufPool`], aligned buffers kept for reuse, or shared as `Bytes`.
//! - `op`: one op (read, write, sync) as every engine takes it.
//! - `async_io`: the one trait of the engines, after cloud-hypervisor's `AsyncIo`.
//! - `uring`: the io_uring engine (its ring thread, its eventfd wake-up).
//! - `pread`: pread/pwrite on tokio's blocking pool (the fallback).
//! - `inline`: pread/pwrite on the calling thread ([`inline_io`], [`inline_io_of`]).
//! - `engine`: [`IoEngine`], what callers use; it picks the engine per op.
//! - `error`: [`IoError`], [`StartError`].
//!
//! ```text
//!  caller ──IoEngine::read_exact_at / write_all_at / write_shared_at / sync──┐
//!     inline_io thread? ─yes─> inline: pread/pwrite here                     │
//!                       └no──> io_uring ring thread, or pread on the blocking pool
//! ```

pub mod align;
mod async_io;
mod engine;
mod error;
mod inline;
mod op;
pub mod pool;
mod pread;
mod uring;

pub use align::{AlignedBuf, ALIGN};
pub use engine::IoEngine;
pub use error::{IoError, StartError};
pub use inline::{inline_io, inline_io_of};
pub use op::OpKind;
pub use pool::BufPool;
