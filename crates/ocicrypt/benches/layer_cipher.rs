//! Throughput of the ocicrypt layer cipher (AES-256-CTR + HMAC-SHA256) on one long stream,
//! against the ceiling that OpenSSL's own AES and HMAC speeds put on it.
//!
//! Run pinned to one core: `taskset -c 0 cargo bench -p layercrypt-ocicrypt --bench layer_cipher`.
//! `BENCH_BYTES` sets the layer size (default 1 GiB), `BENCH_RUNS` the repetitions (default 5).
//!
//! Not criterion: one sample is a whole 1 GiB stream, so the report is the median of a few
//! runs. What is measured, each run interleaved so that drift hits every line alike:
//!
//! - `encrypt`: a generated source (a `Read` that repeats one 1 MiB pseudo-random buffer, so
//!   nothing of layer size is allocated) through [`copy_all`] into an [`Encryptor`] over
//!   `io::sink()`; the HMAC is computed by the encryptor as always.
//! - `decrypt`: the layer is encrypted once, before timing, to a temporary file in the system
//!   temp dir (`/tmp`); each run opens it and reads it through a [`Decryptor`] into
//!   `io::sink()`, HMAC verified. The file comes from the page cache, so this includes one
//!   kernel copy per byte: `file read` measures that copy alone.
//! - `AES-256-CTR` and `HMAC-SHA256`: the same OpenSSL calls the cipher makes (`Crypter`,
//!   `MdCtx` with an HMAC key), alone, over the same buffer in [`CHUNK`] pieces.
//!
//! Times are wall clock and on-CPU time of this thread (`/proc/thread-self/schedstat`, which
//! counts user and kernel time). `openssl speed` reports bytes per CPU second, so the ratios to
//! its ceiling use on-CPU time; on an idle pinned core the two agree.
// A bench binary's report is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error as StdError;
use std::fs::File;
use std::io::{self, Read};
use std::process::Command;
use std::time::Instant;

use layercrypt_ocicrypt::blockcipher::{
    copy_all, generate_key, Decryptor, Encryptor, CHUNK, HOLD_BACK,
};
use layercrypt_ocicrypt::options::{PrivateOptions, PublicOptions};
use openssl::md::Md;
use openssl::md_ctx::MdCtx;
use openssl::pkey::PKey;
use openssl::symm::{Cipher, Crypter, Mode};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

const PATTERN_LEN: usize = 1 << 20;
const DEFAULT_BYTES: u64 = 1 << 30;
const DEFAULT_RUNS: usize = 5;

/// Yields `remaining` bytes by repeating `pattern`.
struct PatternReader<'a> {
    pattern: &'a [u8],
    pos: usize,
    remaining: u64,
}

impl<'a> PatternReader<'a> {
    fn new(pattern: &'a [u8], len: u64) -> Self {
        Self {
            pattern,
            pos: 0,
            remaining: len,
        }
    }
}

impl Read for PatternReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(self.pattern.len() - self.pos)
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.pattern[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.pattern.len();
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Calls `f` with successive pieces of at most [`CHUNK`] bytes of the repeated pattern.
fn for_each_chunk(pattern: &[u8], len: u64, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut src = PatternReader::new(pattern, len);
    while src.remaining > 0 {
        let n = CHUNK
            .min(pattern.len() - src.pos)
            .min(usize::try_from(src.remaining).unwrap_or(usize::MAX));
        f(&pattern[src.pos..src.pos + n])?;
        src.pos = (src.pos + n) % pattern.len();
        src.remaining -= n as u64;
    }
    Ok(())
}

/// Nanoseconds this thread has spent on a CPU (user and kernel).
fn cpu_ns() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let first = s.split_whitespace().next().ok_or("empty schedstat")?;
    Ok(first.parse()?)
}

/// Wall and on-CPU seconds of one run.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<Sample> {
    let cpu0 = cpu_ns()?;
    let t0 = Instant::now();
    f()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ns()? - cpu0) as f64 / 1e9;
    Ok(Sample { wall, cpu })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A measured line: name and its samples.
struct Line {
    name: &'static str,
    samples: Vec<Sample>,
}

impl Line {
    /// Median MB/s (10^6 bytes/s) by wall clock and by CPU time.
    fn mbps(&self, bytes: u64) -> (f64, f64) {
        let mb = bytes as f64 / 1e6;
        (
            median(self.samples.iter().map(|s| mb / s.wall).collect()),
            median(self.samples.iter().map(|s| mb / s.cpu).collect()),
        )
    }
}

/// Peak resident set size of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmHWM line")?;
    Ok(kib.parse()?)
}

/// Runs `openssl speed` with `args` and returns the MB/s on the line starting with `label`
/// (openssl prints 1000s of bytes per CPU second, e.g. `AES-256-CTR  5900000.00k`).
fn openssl_speed(args: &[&str], label: &str) -> Result<f64> {
    let out = Command::new("openssl").arg("speed").args(args).output()?;
    if !out.status.success() {
        return Err(format!("openssl speed {args:?} failed: {}", out.status).into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .ok_or_else(|| format!("no {label:?} line in openssl speed output"))?;
    let last = line.split_whitespace().last().ok_or("empty line")?;
    let kbps: f64 = last.trim_end_matches('k').parse()?;
    Ok(kbps / 1000.0)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number").into()),
        Err(_) => Ok(default),
    }
}

/// The harmonic bound of two passes over the same bytes.
fn ceiling(aes: f64, hmac: f64) -> f64 {
    1.0 / (1.0 / aes + 1.0 / hmac)
}

fn main() -> Result<()> {
    let bytes: u64 = env_or("BENCH_BYTES", DEFAULT_BYTES)?;
    let runs: usize = env_or("BENCH_RUNS", DEFAULT_RUNS)?;
    if runs == 0 {
        return Err("BENCH_RUNS must be at least 1".into());
    }

    let mut pattern = vec![0u8; PATTERN_LEN];
    openssl::rand::rand_bytes(&mut pattern)?;
    let (key, nonce) = generate_key()?;
    let private = PrivateOptions::new(key, nonce, "sha256:bench".into())?;

    // The ciphertext to decrypt, written once before timing.
    let mut ct_file = tempfile::Builder::new()
        .prefix("layercrypt-bench-")
        .tempfile()?;
    let mut enc = Encryptor::new(ct_file.as_file_mut(), private.symkey(), private.nonce())?;
    copy_all(&mut PatternReader::new(&pattern, bytes), &mut enc)?;
    let (_, tag, written) = enc.finish()?;
    if written != bytes {
        return Err(format!("wrote {written} of {bytes} bytes").into());
    }
    let public = PublicOptions::new(tag);
    eprintln!(
        "layer_cipher: {bytes} bytes x {runs} runs, CHUNK {CHUNK}, HOLD_BACK {HOLD_BACK}, \
         ciphertext in {}",
        ct_file.path().display()
    );

    let key = private.symkey().expose_secret();
    let mut ctr_out = vec![0u8; CHUNK + 16];
    let mut lines = [
        "encrypt (Encryptor)",
        "decrypt (Decryptor, from file)",
        "AES-256-CTR alone",
        "HMAC-SHA256 alone",
        "file read alone (page cache)",
    ]
    .map(|name| Line {
        name,
        samples: Vec::with_capacity(runs),
    });
    for _ in 0..runs {
        lines[0].samples.push(timed(|| {
            let mut enc = Encryptor::new(io::sink(), private.symkey(), private.nonce())?;
            copy_all(&mut PatternReader::new(&pattern, bytes), &mut enc)?;
            let (_, got, n) = enc.finish()?;
            if n != bytes || got != tag {
                return Err("encryption is not deterministic".into());
            }
            Ok(())
        })?);
        lines[1].samples.push(timed(|| {
            let file = File::open(ct_file.path())?;
            let mut dec = Decryptor::new(file, &private, &public)?;
            let n = copy_all(&mut dec, &mut io::sink())?;
            if n != bytes {
                return Err(format!("decrypted {n} of {bytes} bytes").into());
            }
            Ok(())
        })?);
        lines[2].samples.push(timed(|| {
            let mut ctr = Crypter::new(Cipher::aes_256_ctr(), Mode::Encrypt, key, Some(&nonce))?;
            for_each_chunk(&pattern, bytes, |piece| {
                ctr.update(piece, &mut ctr_out)?;
                Ok(())
            })
        })?);
        lines[3].samples.push(timed(|| {
            let hmac_key = PKey::hmac(key)?;
            let mut mac = MdCtx::new()?;
            mac.digest_sign_init(Some(Md::sha256()), &hmac_key)?;
            for_each_chunk(&pattern, bytes, |piece| {
                mac.digest_sign_update(piece)?;
                Ok(())
            })?;
            let mut out = [0u8; 32];
            mac.digest_sign_final(Some(&mut out))?;
            Ok(())
        })?);
        lines[4].samples.push(timed(|| {
            let mut file = File::open(ct_file.path())?;
            copy_all(&mut file, &mut io::sink())?;
            Ok(())
        })?);
    }
    let rss_kib = peak_rss_kib()?;

    let ossl_aes = openssl_speed(
        &["-evp", "aes-256-ctr", "-bytes", "16384", "-seconds", "2"],
        "AES-256-CTR",
    );
    let ossl_hmac = openssl_speed(
        &["-hmac", "sha256", "-bytes", "16384", "-seconds", "2"],
        "hmac(sha256)",
    );

    let mbps: Vec<(f64, f64)> = lines.iter().map(|l| l.mbps(bytes)).collect();
    let ours = ceiling(mbps[2].1, mbps[3].1);

    println!(
        "\n### layer_cipher: {} MiB, median of {runs}, CHUNK {} KiB\n",
        bytes >> 20,
        CHUNK >> 10
    );
    println!("| measure | MB/s (wall) | MB/s (CPU time) |");
    println!("|---|---:|---:|");
    for (line, (wall, cpu)) in lines.iter().zip(&mbps) {
        println!("| {} | {wall:.0} | {cpu:.0} |", line.name);
    }
    println!(
        "| ceiling from the two lines above, 1/(1/aes+1/hmac) | {:.0} | {ours:.0} |",
        ceiling(mbps[2].0, mbps[3].0)
    );
    println!("\n| reference | value |");
    println!("|---|---:|");
    println!("| peak RSS (VmHWM) | {:.1} MiB |", rss_kib as f64 / 1024.0);
    match (&ossl_aes, &ossl_hmac) {
        (Ok(aes), Ok(hmac)) => {
            let c = ceiling(*aes, *hmac);
            println!("| `openssl speed -evp aes-256-ctr` (16 KiB) | {aes:.0} MB/s |");
            println!("| `openssl speed -hmac sha256` (16 KiB) | {hmac:.0} MB/s |");
            println!("| openssl ceiling 1/(1/aes+1/hmac) | {c:.0} MB/s |");
            println!(
                "| encrypt / openssl ceiling (CPU time) | {:.1} % |",
                100.0 * mbps[0].1 / c
            );
            println!(
                "| decrypt / openssl ceiling (CPU time) | {:.1} % |",
                100.0 * mbps[1].1 / c
            );
        }
        _ => {
            for e in [&ossl_aes, &ossl_hmac]
                .into_iter()
                .filter_map(|r| r.as_ref().err())
            {
                println!("| openssl speed | unavailable: {e} |");
            }
        }
    }
    println!(
        "| encrypt / in-process ceiling (CPU time) | {:.1} % |",
        100.0 * mbps[0].1 / ours
    );
    println!(
        "| decrypt / in-process ceiling (CPU time) | {:.1} % |",
        100.0 * mbps[1].1 / ours
    );
    Ok(())
}
