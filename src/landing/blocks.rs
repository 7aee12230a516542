//! Part output compressed in blocks, beside the writer.
//!
//! A part's lines are gathered into blocks of whole lines, and each block is compressed on
//! its own: to one gzip member (RFC 1952 §2.2: a gzip file is a series of members; gzip,
//! zcat, Python, duckdb, Spark and the warehouses' loaders read them all, as they read `pigz`
//! and `bgzip` output), or to one zstd frame (RFC 8878 §3.1: a zstd file is a series of
//! frames; `zstd -d`, duckdb and libzstd's streaming decoder read them all). Blocks are
//! compressed (libdeflate, libzstd) by a small pool of threads while the writer goes on
//! enveloping the next lines, and are stored in order. The bytes a block compresses to
//! depend only on the block, the codec and the level, so a part's bytes do not depend on
//! timing or on the number of threads.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock, mpsc};

use libdeflater::{CompressionLvl, Compressor};
use tokio::sync::oneshot;

/// How each block is compressed, and at which level (checked with the config: 1 to 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip(u8),
    Zstd(u8),
}

impl Codec {
    /// Uncompressed bytes per block. Gzip: large enough that the member framing (18 bytes)
    /// and the dictionary restart cost nothing measurable (deflate's window is 32 KiB),
    /// small enough that the blocks in flight stay about a MiB. Zstd: its window is larger
    /// (1 MiB and more at the low levels), so a larger block keeps the ratio.
    pub fn block(self) -> usize {
        match self {
            Codec::Gzip(_) => GZIP_BLOCK,
            Codec::Zstd(_) => ZSTD_BLOCK,
        }
    }

    /// What an empty part holds: one empty member or frame, so that readers see a valid
    /// compressed file of zero lines.
    pub fn empty(self) -> Vec<u8> {
        compress(&[], self)
    }
}

/// Uncompressed bytes per gzip member.
pub const GZIP_BLOCK: usize = 256 << 10;

/// Uncompressed bytes per zstd frame.
pub const ZSTD_BLOCK: usize = 1 << 20;

/// Threads compressing, and blocks in flight per writer: enough to keep the cores busy,
/// few enough that memory stays flat (each thread keeps a compressor and its output room).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get().clamp(2, 4))
}

type Job = Box<dyn FnOnce() + Send>;

/// The process's compression threads, started on first use.
fn pool() -> &'static Mutex<mpsc::Sender<Job>> {
    static POOL: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        for index in 0..threads() {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("landfall-gzip-{index}"))
                .spawn(move || {
                    loop {
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("starting a compression thread");
        }
        Mutex::new(sender)
    })
}

/// One block compressed to one gzip member or zstd frame.
fn compress(block: &[u8], codec: Codec) -> Vec<u8> {
    match codec {
        Codec::Gzip(level) => gzip_member(block, level),
        Codec::Zstd(level) => zstd_frame(block, level),
    }
}

/// One block compressed to one zstd frame at `level`, with its content size and a
/// checksum. Each compression thread keeps its context.
fn zstd_frame(block: &[u8], level: u8) -> Vec<u8> {
    thread_local! {
        static COMPRESSOR: RefCell<Option<(u8, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    }
    COMPRESSOR.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|(current, _)| *current != level) {
            let mut compressor =
                zstd::bulk::Compressor::new(i32::from(level)).expect("levels are checked with the config");
            compressor
                .include_checksum(true)
                .expect("setting the checksum flag cannot fail");
            *slot = Some((level, compressor));
        }
        let (_, compressor) = slot.as_mut().expect("set above");
        compressor
            .compress(block)
            .expect("a zstd context compresses any block within its bound")
    })
}

/// One block compressed to one gzip member at `level`. Each compression thread keeps its
/// compressor and output room.
fn gzip_member(block: &[u8], level: u8) -> Vec<u8> {
    thread_local! {
        static COMPRESSOR: RefCell<Option<(u8, Compressor, Vec<u8>)>> = const { RefCell::new(None) };
    }
    COMPRESSOR.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|(current, _, _)| *current != level) {
            let lvl = CompressionLvl::new(i32::from(level)).expect("levels are checked with the config");
            *slot = Some((level, Compressor::new(lvl), Vec::new()));
        }
        let (_, compressor, scratch) = slot.as_mut().expect("set above");
        let bound = compressor.gzip_compress_bound(block.len());
        if scratch.len() < bound {
            scratch.resize(bound, 0);
        }
        let written = compressor
            .gzip_compress(block, scratch)
            .expect("the output buffer holds the compression bound");
        scratch[..written].to_vec()
    })
}

/// A block on its way through the pool: its buffer comes back, emptied, with the member.
type Member = oneshot::Receiver<(Vec<u8>, Vec<u8>)>;

/// Output built from independently compressed blocks, kept in order.
pub struct Blocks {
    /// Lines not yet handed to the pool.
    block: Vec<u8>,
    /// Blocks being compressed, oldest first.
    pending: VecDeque<Member>,
    /// Emptied block buffers, to be filled again.
    spare: Vec<Vec<u8>>,
    /// Compressed members, in order, not yet taken by the caller.
    pub output: Vec<u8>,
    in_flight: usize,
    codec: Codec,
}

impl Blocks {
    pub fn new(output: Vec<u8>, codec: Codec) -> Self {
        Self {
            block: Vec::with_capacity(Self::capacity(codec)),
            pending: VecDeque::new(),
            spare: Vec::new(),
            output,
            in_flight: threads(),
            codec,
        }
    }

    /// How the blocks are compressed.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Room for the line that crosses the block size without the buffer growing.
    fn capacity(codec: Codec) -> usize {
        codec.block() + codec.block() / 4
    }

    /// Adds one line; a full block goes to the pool. Waits for the oldest block when too
    /// many are in flight.
    pub async fn write(&mut self, line: &[u8]) -> Result<(), String> {
        self.block.extend_from_slice(line);
        if self.block.len() >= self.codec.block() {
            if self.pending.len() >= self.in_flight {
                self.collect_oldest().await?;
            }
            self.dispatch()?;
        }
        Ok(())
    }

    /// Hands the gathered lines to the pool.
    fn dispatch(&mut self) -> Result<(), String> {
        if self.block.is_empty() {
            return Ok(());
        }
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(Self::capacity(self.codec)));
        let mut block = std::mem::replace(&mut self.block, fresh);
        let codec = self.codec;
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::new(move || {
            let member = compress(&block, codec);
            block.clear();
            let _ = sender.send((block, member));
        });
        pool()
            .lock()
            .map_err(|_| "the compression threads are gone".to_owned())?
            .send(job)
            .map_err(|_| "the compression threads are gone".to_owned())?;
        self.pending.push_back(receiver);
        Ok(())
    }

    async fn collect_oldest(&mut self) -> Result<(), String> {
        let Some(pending) = self.pending.pop_front() else {
            return Ok(());
        };
        let compressed = pending.await.map_err(|_| "a compression thread failed".to_owned())?;
        self.accept(compressed);
        Ok(())
    }

    /// Appends a compressed member to the output and keeps its emptied block buffer.
    fn accept(&mut self, (block, member): (Vec<u8>, Vec<u8>)) {
        self.output.extend_from_slice(&member);
        self.spare.push(block);
    }

    /// Moves the blocks already compressed, in order, to the output.
    pub fn collect_finished(&mut self) -> Result<(), String> {
        while let Some(pending) = self.pending.front_mut() {
            match pending.try_recv() {
                Ok(compressed) => {
                    self.pending.pop_front();
                    self.accept(compressed);
                }
                Err(oneshot::error::TryRecvError::Empty) => break,
                Err(oneshot::error::TryRecvError::Closed) => return Err("a compression thread failed".to_owned()),
            }
        }
        Ok(())
    }

    /// Compresses what is left and waits for every block.
    pub async fn finish(mut self) -> Result<Vec<u8>, String> {
        self.dispatch()?;
        while !self.pending.is_empty() {
            self.collect_oldest().await?;
        }
        Ok(self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// `count` short JSON lines.
    fn lines(count: usize) -> String {
        (0..count)
            .map(|index| {
                format!(
                    "{{\"id\":{index},\"status\":\"{}\"}}\n",
                    ["open", "paid", "void"][index % 3]
                )
            })
            .collect()
    }

    /// `text` written line by line through [`Blocks`] with `codec`.
    async fn compressed(text: &str, codec: Codec) -> Vec<u8> {
        let mut blocks = Blocks::new(Vec::new(), codec);
        for line in text.split_inclusive('\n') {
            blocks.write(line.as_bytes()).await.unwrap();
        }
        blocks.finish().await.unwrap()
    }

    #[tokio::test]
    async fn every_gzip_level_round_trips_and_higher_levels_are_smaller() {
        let text = lines(20_000);
        let mut sizes = Vec::new();
        for level in [1u8, 5, 12] {
            let gz = compressed(&text, Codec::Gzip(level)).await;
            let mut back = String::new();
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_string(&mut back)
                .unwrap();
            assert_eq!(back, text, "level {level}");
            sizes.push(gz.len());
        }
        assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2], "{sizes:?}");
    }

    #[tokio::test]
    async fn zstd_frames_read_back_as_one_stream_at_every_level() {
        let text = lines(100_000);
        assert!(text.len() > 2 * ZSTD_BLOCK, "the text spans several frames");
        for level in [1u8, 6, 12] {
            let zst = compressed(&text, Codec::Zstd(level)).await;
            let mut back = String::new();
            zstd::stream::read::Decoder::new(&zst[..])
                .unwrap()
                .read_to_string(&mut back)
                .unwrap();
            assert_eq!(back, text, "level {level}");
            // Small data compresses at any level; the levels' sizes are not ordered on it.
            assert!(zst.len() < text.len() / 5, "level {level}: {}", zst.len());
        }
    }

    #[test]
    fn an_empty_frame_decodes_to_nothing() {
        let empty = Codec::Zstd(1).empty();
        assert!(!empty.is_empty());
        assert!(zstd::stream::decode_all(&empty[..]).unwrap().is_empty());
    }
}
