//! Fuzz target `decode_message`: feeds arbitrary bytes to the openflow
//! codec the way a controller reads a switch connection, and checks the
//! crate's two promises about decoding:
//!
//! * decoding never panics, whatever the bytes (a panic anywhere in
//!   [`message_length`] or [`OfpMessage::decode`] is reported by libFuzzer);
//! * every message that decodes re-encodes, and decoding the re-encoding
//!   gives back the same value (`decode(encode(m)) == m`).
//!
//! The input is treated as a byte stream, not a single message, so one input
//! can carry several messages and exercise the framing too.
//!
//! It also checks the crate's promise that memory is bounded by the input:
//! libFuzzer's `-malloc_limit_mb` only works through sanitizer malloc hooks,
//! which a stable `-s none` build does not have, so a counting global
//! allocator measures the heap each input needs instead (see [`heap`]).
//!
//! See `fuzz/README.md` for how to build, run and reproduce.

#![no_main]

use std::fmt::Write as _;

use libfuzzer_sys::fuzz_target;
use openflow::{OfpMessage, message_length};

/// `ofp_header` is 8 bytes; a frame shorter than that would stall the loop.
const OFP_HEADER_LEN: usize = 8;

/// Peak heap one input may use, per input byte, on top of [`HEAP_SLACK`].
///
/// Decoding expands the wire form: a 4-byte OXM TLV becomes a 40-byte
/// `OxmField`, an 8-byte action a 64-byte `Action`, and `Vec` doubling can
/// add as much again; the check then holds two decodings and one encoding
/// at once. That is ~45 bytes per input byte at worst; 64 leaves a margin
/// while still catching any allocation sized by a count read from the wire
/// (a 16-bit length can claim 64 KiB from a 10-byte input, a 32-bit one
/// 4 GiB).
const HEAP_PER_INPUT_BYTE: usize = 64;
/// Fixed allowance for small buffers whose size does not scale with input.
const HEAP_SLACK: usize = 64 * 1024;

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

fuzz_target!(|data: &[u8]| {
    let baseline = heap::start();
    check_stream(data);
    let peak = heap::peak_since(baseline);
    let budget = HEAP_PER_INPUT_BYTE * data.len() + HEAP_SLACK;
    assert!(
        peak <= budget,
        "decoding {} input bytes used {peak} bytes of heap at peak (budget {budget})",
        data.len()
    );
    heap::report_ratio(data.len(), peak);
});

fn check_stream(mut rest: &[u8]) {
    // One buffer for every re-encoding, as a controller reuses its send
    // buffer; this also checks that `encode` appends from `out.len()`
    // correctly after a `clear`.
    let mut encoded = Vec::new();
    // Frame as a controller would: `Ok(None)` means the header has not
    // arrived yet and `Err` means the stream cannot be resynchronized (the
    // connection is dropped); either way nothing more can be read.
    while let Ok(Some(len)) = message_length(rest) {
        assert!(
            len >= OFP_HEADER_LEN,
            "message_length framed a {len}-byte message, shorter than its header: {}",
            hex(rest.get(..OFP_HEADER_LEN).unwrap_or(rest))
        );
        // A message longer than what is left has not fully arrived.
        let Some(frame) = rest.get(..len) else { break };
        rest = &rest[len..];
        // Malformed messages are rejected with an error, which is fine; the
        // stream goes on with the next frame, as the controller would after
        // answering with OFPT_ERROR.
        if let Ok(msg) = OfpMessage::decode(frame) {
            check_round_trip(frame, &msg, &mut encoded);
        }
    }
}

/// Re-encodes a decoded message and checks the re-encoding frames and
/// decodes to the same value.
fn check_round_trip(frame: &[u8], msg: &OfpMessage, encoded: &mut Vec<u8>) {
    encoded.clear();
    if let Err(e) = msg.encode(encoded) {
        panic!(
            "decoded message does not re-encode: {e}\n input: {}\n value: {msg:?}",
            hex(frame)
        );
    }
    match message_length(encoded) {
        Ok(Some(n)) if n == encoded.len() => {}
        other => panic!(
            "re-encoding is not framed by its own header ({other:?}, {} bytes)\n input: {}\n output: {}",
            encoded.len(),
            hex(frame),
            hex(encoded)
        ),
    }
    let again = match OfpMessage::decode(encoded) {
        Ok(again) => again,
        Err(e) => panic!(
            "re-encoding does not decode: {e}\n input: {}\n output: {}\n value: {msg:?}",
            hex(frame),
            hex(encoded)
        ),
    };
    if again != *msg {
        panic!(
            "decode(encode(m)) != m\n input: {}\n output: {}\n first: {msg:?}\n second: {again:?}",
            hex(frame),
            hex(encoded)
        );
    }
}

/// Lowercase hex without separators, for panic messages that can be pasted
/// into `xxd -r -p`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A global allocator that counts live heap bytes and their peak, so each
/// input's memory use can be checked without sanitizer malloc hooks.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    static WORST_RATIO: AtomicUsize = AtomicUsize::new(0);

    /// Delegates to the system allocator, counting bytes on the way.
    pub struct Counting;

    fn grew(by: usize) {
        let live = LIVE.fetch_add(by, Relaxed) + by;
        PEAK.fetch_max(live, Relaxed);
    }

    // SAFETY: every method forwards to `System` with the caller's own
    // arguments, so `System`'s guarantees carry over; the counters are
    // only bookkeeping and never affect what is returned.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as our caller's.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as our caller's.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as our caller's.
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Relaxed);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: same contract as our caller's.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                // Count the old block as still live while the new one is
                // made, as a moving realloc briefly holds both.
                grew(new_size);
                LIVE.fetch_sub(layout.size(), Relaxed);
            }
            p
        }
    }

    /// Starts measuring one input; returns the heap already live.
    pub fn start() -> usize {
        let live = LIVE.load(Relaxed);
        PEAK.store(live, Relaxed);
        live
    }

    /// Peak heap above `baseline` since [`start`].
    pub fn peak_since(baseline: usize) -> usize {
        PEAK.load(Relaxed).saturating_sub(baseline)
    }

    /// With `DECODE_MESSAGE_HEAP_STATS` set, prints each new worst
    /// heap-per-input-byte ratio, to see how close inputs come to the
    /// budget (e.g. when replaying a corpus).
    pub fn report_ratio(input_len: usize, peak: usize) {
        static ENABLED: OnceLock<bool> = OnceLock::new();
        if !*ENABLED.get_or_init(|| std::env::var_os("DECODE_MESSAGE_HEAP_STATS").is_some()) {
            return;
        }
        let ratio = peak / input_len.max(1);
        if WORST_RATIO.fetch_max(ratio, Relaxed) < ratio {
            eprintln!("heap: {peak} bytes at peak for {input_len} input bytes ({ratio} per byte)");
        }
    }
}
