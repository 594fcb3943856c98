//! Benchmark (not a test): what one core of this machine does with rfs blocks — BLAKE2b-256
//! of a 512 KiB block, and a whole verified decode (hash of the blob, AES-256-GCM, snappy,
//! hash of the plaintext) — over incompressible data, like the 100 MiB file of
//! `benches/flist.sh`, which adds the cost of fetching the same blobs (curl and nginx) to
//! bound what any rfs-compatible reader can do on this machine. Run with `make bench`.

use initagent::flist::buffers;
use initagent::flist::codec::{decode, encode, hash, BLOCK_SIZE};
use std::hint::black_box;
use std::time::Instant;

/// MB/s of `work` over `bytes` bytes a call, best of five rounds of 64 calls, each call
/// given an input made by `input` before the clock starts.
fn throughput<T>(bytes: usize, input: impl Fn() -> T, mut work: impl FnMut(T)) -> f64 {
    const CALLS: usize = 64;
    (0..5)
        .map(|_| {
            let inputs: Vec<T> = (0..CALLS).map(|_| input()).collect();
            let started = Instant::now();
            for one in inputs {
                work(one);
            }
            (bytes * CALLS) as f64 / 1e6 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() {
    // xorshift: incompressible and reproducible.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let plain: Vec<u8> = (0..BLOCK_SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let (id, key, stored) = encode(&plain);
    let hash_mbps = throughput(
        plain.len(),
        || (),
        |()| {
            black_box(hash(black_box(&plain)));
        },
    );
    // As in the mount daemon: the blob comes in a kept buffer, and the plaintext's buffer
    // comes back once used (there, when the memory cache lets the block go).
    let decode_mbps = throughput(
        plain.len(),
        || {
            let mut blob = buffers::take_filled(stored.len());
            blob.copy_from_slice(&stored);
            blob
        },
        |blob| {
            if let Ok(plain) = decode(&id, &key, blob) {
                buffers::give(black_box(plain));
            }
        },
    );
    println!("codec, one core, 512 KiB incompressible blocks:");
    println!("  BLAKE2b-256:                             {hash_mbps:7.1} MB/s");
    println!("  verified decode (2 hashes, AES, snappy): {decode_mbps:7.1} MB/s");
}
